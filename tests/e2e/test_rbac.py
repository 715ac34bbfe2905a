"""Every role over every public route of every service, through the gateway.

The permission matrix (docs/permissions.md) is written down once, below, as
rules over (method, path); the test walks every operation in the gateway's
merged OpenAPI document with a token of each role and requires exactly the
permitted answers: a refused role gets 403, a permitted one never does (it may
get 404 for the random ids used, 422 for the empty body, or succeed).
"""

import asyncio
import os
import re
import subprocess
import sys
import uuid

import pytest

ROLES = ("super_admin", "org_admin", "agent", "viewer")
ALL = frozenset(ROLES)
WORKERS = frozenset({"super_admin", "org_admin", "agent"})
ADMINS = frozenset({"super_admin", "org_admin"})
OPERATOR = frozenset({"super_admin"})
WRITES = {"POST", "PUT", "PATCH", "DELETE"}

#: Routes a walk must not call with a live token (they end the caller's session).
SKIP = {("POST", "/v1/auth/logout"), ("POST", "/v1/auth/me/password")}
#: Calls in flight at once: the walk is ~1,000 independent requests, each one mostly
#: waiting on the gateway and a service (68 s one at a time on a 2-core box).
CONCURRENCY = 6

PUBLIC = {
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/token"),
}


def allowed(method: str, path: str) -> frozenset[str]:
    """The permission matrix."""
    if path.startswith("/v1/auth/"):
        return ALL  # one's own account
    if path.startswith("/v1/audit-log"):
        return OPERATOR
    if path.startswith("/v1/organizations"):
        if path.startswith("/v1/organizations/me"):
            return ADMINS if method in WRITES else ALL
        return OPERATOR  # the platform operator's routes
    if path.startswith(("/v1/users", "/v1/api-clients")):
        return ADMINS
    admin_writes = (
        "/v1/whatsapp",
        "/v1/departments",
        "/v1/tags",
        "/v1/contact-attributes",
        "/v1/canned-responses",
        "/v1/webhook-endpoints",
        "/v1/automation",
    )
    if (method, path) == ("POST", "/v1/automation/rules/dry-run"):
        return ALL  # a dry run reads: nothing is written or sent
    if method in WRITES and path.startswith(admin_writes):
        return ADMINS
    if method in WRITES and re.fullmatch(r"/v1/contacts/\{[^}]+\}/erase", path):
        return ADMINS  # erasure of personal data is an administrator's decision
    if path == "/v1/contacts/export":
        return WORKERS  # a bulk copy of customers' personal data is not a viewer's read
    if method in WRITES:
        return WORKERS
    return ALL


def _fill(path: str) -> str:
    return re.sub(
        r"\{[^}]+\}", lambda m: "tmpl" if "name" in m.group(0) else str(uuid.uuid4()), path
    )


async def _login(loop, email: str, password: str) -> str:
    r = await loop.call("POST", "/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


@pytest.fixture
async def role_tokens(loop, stack):
    owner = await loop.register("RBAC Org")
    password = "a long and careful passphrase"
    admin_email = f"root{uuid.uuid4().hex[:6]}@example.com"
    env = {**os.environ, **stack.cfg.common_env(), "PYTAKE_BOOTSTRAP_PASSWORD": password}
    await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "pytake_auth",
            "create-super-admin",
            "--email",
            admin_email,
            "--full-name",
            "Root Operator",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    root = await _login(loop, admin_email, password)
    as_root = {"Authorization": f"Bearer {root}"}
    me = await loop.call("GET", "/v1/auth/me", headers=as_root)
    assert me.status_code == 200, me.text
    # The operators' organization starts on the enterprise plan (its tooling calls the API
    # for every tenant) ...
    for _ in range(40):  # tenants creates it from auth's event
        operators = await loop.call(
            "GET", f"/v1/organizations/{me.json()['organization_id']}", headers=as_root
        )
        if operators.status_code != 404:
            break
        await asyncio.sleep(0.25)
    assert operators.status_code == 200, operators.text
    assert operators.json()["plan"] == "enterprise"
    # ... and the owner's is lifted off the free plan: its seat limit, so it can hold one
    # user of each role, and its 60 API requests a minute (the walk makes ~130 a role).
    r = await loop.call(
        "PUT",
        f"/v1/organizations/{owner.organization_id}/plan",
        json={"plan": "enterprise"},
        headers=as_root,
    )
    assert r.status_code == 200, r.text
    tokens = {"super_admin": root, "org_admin": owner.access_token}
    for role in ("agent", "viewer"):
        email = f"{role}{uuid.uuid4().hex[:6]}@example.com"
        for _ in range(40):  # the plan change reaches auth through an event
            r = await loop.call(
                "POST",
                "/v1/users",
                headers=owner.headers,
                json={
                    "email": email,
                    "full_name": role.title(),
                    "role": role,
                    "password": password,
                },
            )
            if r.status_code != 402:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 201, r.text
        tokens[role] = await _login(loop, email, password)
    return tokens


async def test_every_role_gets_exactly_the_permitted_answers(loop, role_tokens):
    spec = (await loop.call("GET", "/openapi.json")).json()
    assert not spec.get("x-pytake-unavailable"), spec.get("x-pytake-unavailable")
    operations = [
        (m.upper(), p)
        for p, item in spec["paths"].items()
        for m in item
        if m.upper() in {"GET", *WRITES} and p.startswith("/v1/")
    ]
    assert len(operations) > 60
    calls = [
        (method, path, role)
        for method, path in sorted(operations)
        if (method, path) not in SKIP | PUBLIC
        for role in ROLES
    ]
    lanes = asyncio.Semaphore(CONCURRENCY)

    async def check(method: str, path: str, role: str) -> str | None:
        expected = allowed(method, path)
        async with lanes:
            r = await loop.call(
                method,
                _fill(path),
                headers={"Authorization": f"Bearer {role_tokens[role]}"},
                **({"json": {}} if method in WRITES else {}),
            )
        refused = r.status_code == 403
        if refused == (role in expected) or r.status_code in (401, 429, 500):
            return (
                f"{method} {path} as {role}: {r.status_code} "
                f"(expected {'allowed' if role in expected else '403'})"
            )
        return None

    wrong = [w for w in await asyncio.gather(*(check(*c) for c in calls)) if w]
    assert not wrong, "\n".join(wrong)
