import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from pytake_common.settings import ServiceSettings, to_asyncpg_url


def test_prod_refuses_missing_or_placeholder_secret(tmp_path):
    with pytest.raises(ValidationError, match="PYTAKE_SECRET_KEY"):
        ServiceSettings(env="prod", state_dir=tmp_path)
    with pytest.raises(ValidationError, match="PYTAKE_SECRET_KEY"):
        ServiceSettings(env="prod", secret_key="changeme", state_dir=tmp_path)
    ok = ServiceSettings(env="prod", secret_key="k" * 40, state_dir=tmp_path)
    assert ok.secret == "k" * 40


def test_dev_generates_one_persistent_secret(tmp_path):
    first = ServiceSettings(env="dev", state_dir=tmp_path).secret
    second = ServiceSettings(env="dev", state_dir=tmp_path).secret
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_each_service_gets_its_own_database(monkeypatch, tmp_path):
    monkeypatch.delenv("WHATSAPP_GATEWAY_DATABASE_URL", raising=False)
    s = ServiceSettings(
        service_name="whatsapp-gateway",
        state_dir=tmp_path,
        database_url="postgresql://u:p@db:5432/postgres",
    )
    assert s.service_database_url() == "postgresql+asyncpg://u:p@db:5432/pytake_whatsapp_gateway"
    monkeypatch.setenv("WHATSAPP_GATEWAY_DATABASE_URL", "postgresql://other/wa")
    assert s.service_database_url() == "postgresql+asyncpg://other/wa"


def test_socket_urls_survive_conversion():
    url = to_asyncpg_url("postgresql://postgres:@/postgres?host=/tmp/pg", database="pytake_auth")
    parsed = make_url(url)
    assert parsed.drivername == "postgresql+asyncpg"
    assert parsed.database == "pytake_auth"
    assert parsed.query["host"] == "/tmp/pg"
