import uuid

import pytest

from pytake_common.errors import Unauthorized
from pytake_common.scopes import (
    ROLE_CEILINGS,
    SCOPES,
    InsufficientScope,
    allows,
    beyond_role,
    check_scope,
    required_scope,
)
from pytake_common.security import Principal


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/v1/contacts", "contacts:read"),
        ("GET", "/v1/contacts/abc/timeline", "contacts:read"),
        ("POST", "/v1/contacts", "contacts:write"),
        ("PUT", "/v1/contacts/abc/tags/def", "contacts:write"),
        ("DELETE", "/v1/tags/abc", "contacts:write"),
        ("GET", "/v1/conversations/abc/messages", "conversations:read"),
        ("POST", "/v1/conversations/abc/messages", "messages:send"),
        ("POST", "/v1/conversations", "messages:send"),
        ("POST", "/v1/conversations/abc/notes", "conversations:write"),
        ("POST", "/v1/conversations/abc/assign", "conversations:write"),
        ("GET", "/v1/stream", "conversations:read"),
        ("PATCH", "/v1/organizations/me", "organization:write"),
        ("GET", "/v1/whatsapp/numbers", "whatsapp:read"),
        ("GET", "/v1/users", "users:read"),
        ("POST", "/v1/webhook-endpoints/abc/test", "webhooks:write"),
        ("GET", "/v1/api-clients", None),
        ("GET", "/v1/audit-log", None),
        ("GET", "/v1/auth/me", None),
        ("GET", "/healthz", None),
        ("GET", "/v1", None),
    ],
)
def test_each_route_needs_one_scope(method, path, scope):
    assert required_scope(method, path) == scope
    if scope is not None:
        assert scope in SCOPES


def test_scopes_only_narrow():
    assert allows(None, "DELETE", "/v1/api-clients/x")  # not narrowed: the role decides
    assert allows(frozenset({"contacts:read"}), "GET", "/v1/contacts")
    assert not allows(frozenset({"contacts:read"}), "POST", "/v1/contacts")
    assert not allows(frozenset(SCOPES), "GET", "/v1/api-clients")
    with pytest.raises(InsufficientScope) as refused:
        check_scope(frozenset({"contacts:read"}), "POST", "/v1/contacts")
    assert refused.value.status == 403 and refused.value.extra["required_scope"] == "contacts:write"


def test_role_ceilings():
    assert ROLE_CEILINGS["org_admin"] == SCOPES
    assert beyond_role("viewer", ["contacts:read", "contacts:write"]) == ["contacts:write"]
    assert beyond_role("agent", ["messages:send", "users:read"]) == ["users:read"]
    assert beyond_role("super_admin", ["contacts:read"]) == ["contacts:read"]


def _claims(**extra):
    sub = str(uuid.uuid4())
    return {"sub": sub, "org": str(uuid.uuid4()), "role": "agent", **extra}


def test_a_client_principal_carries_its_scopes():
    claims = _claims()
    claims["client_id"] = claims["sub"]
    claims["scope"] = "contacts:read messages:send"
    p = Principal.from_claims(claims)
    assert p.is_client and p.client_id == p.user_id
    assert p.scopes == frozenset({"contacts:read", "messages:send"})
    user = Principal.from_claims(_claims())
    assert not user.is_client and user.scopes is None


@pytest.mark.parametrize(
    "extra",
    [{"client_id": str(uuid.uuid4())}, {"client_id": "nope"}, {"scope": ["contacts:read"]}],
)
def test_malformed_client_claims_are_refused(extra):
    with pytest.raises(Unauthorized):
        Principal.from_claims(_claims(**extra))
