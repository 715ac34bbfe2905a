import secrets
import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

import pytake_auth
from pytake_auth.app import create_app
from pytake_auth.config import Settings
from pytake_devstack.pytest_plugin import migrated_database

MIGRATIONS = Path(pytake_auth.__file__).parent / "migrations"
PASSWORD = "correct horse battery staple"
# Cheap argon2 for speed; production parameters are exercised by the rehash test.
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost_kib": 1024, "argon2_parallelism": 1}


@pytest.fixture
async def database_url(pg_url):
    return await migrated_database(pg_url, "auth", MIGRATIONS)


@pytest.fixture
def make_settings(database_url, kafka_bootstrap, tmp_path):
    secret = secrets.token_urlsafe(32)

    def make(**overrides) -> Settings:
        values = {
            "own_database_url": database_url,
            "kafka_bootstrap": kafka_bootstrap,
            "env": "test",
            "run_workers": False,
            "state_dir": tmp_path,
            "secret_key": SecretStr(secret),
            **FAST_ARGON2,
            **overrides,
        }
        return Settings(**values)

    return make


@pytest.fixture
async def app(make_settings):
    application = create_app(make_settings())
    yield application
    await application.state.db.dispose()


@pytest.fixture
async def client(app):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://auth"
    ) as c:
        yield c


def random_address() -> str:
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


class Api:
    """Thin helpers over the client (test modules cannot import conftest).

    Each call comes from a random client address (the ASGI peer, 127.0.0.1, is a
    trusted proxy, so ``X-Forwarded-For`` counts): the per-address throttle stays
    out of tests that are not about it. Pass ``address`` to pin one.
    """

    password = PASSWORD

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @staticmethod
    def origin(address: str | None = None) -> dict[str, str]:
        return {"X-Forwarded-For": address or random_address()}

    @staticmethod
    def new_email() -> str:
        return f"user-{uuid.uuid4().hex[:12]}@example.com"

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def register(
        self,
        email: str | None = None,
        password: str = PASSWORD,
        headers: dict[str, str] | None = None,
        **extra,
    ) -> httpx.Response:
        body = {
            "email": email or self.new_email(),
            "password": password,
            "full_name": "Ada Lovelace",
            "organization_name": "Analytical Engines",
            **extra,
        }
        return await self.client.post(
            "/v1/auth/register", json=body, headers={**self.origin(), **(headers or {})}
        )

    async def registered(self, **kwargs) -> dict:
        r = await self.register(**kwargs)
        assert r.status_code == 201, r.text
        return r.json()

    async def login(
        self, email: str, password: str = PASSWORD, address: str | None = None
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/auth/login",
            json={"email": email, "password": password},
            headers=self.origin(address),
        )

    async def refresh(self, token: str, address: str | None = None) -> httpx.Response:
        return await self.client.post(
            "/v1/auth/refresh", json={"refresh_token": token}, headers=self.origin(address)
        )

    async def create_user(
        self, admin_token: str, *, role: str = "agent", email: str | None = None, **extra
    ) -> httpx.Response:
        body = {
            "email": email or self.new_email(),
            "full_name": "Grace Hopper",
            "role": role,
            "password": PASSWORD,
            **extra,
        }
        return await self.client.post("/v1/users", json=body, headers=self.bearer(admin_token))

    async def member(self, admin_token: str, role: str = "agent") -> dict:
        """A user created by ``admin_token``'s organization, signed in: its token body."""
        r = await self.create_user(admin_token, role=role)
        assert r.status_code == 201, r.text
        login = await self.login(r.json()["email"])
        assert login.status_code == 200, login.text
        return login.json()


@pytest.fixture
def api(client):
    return Api(client)
