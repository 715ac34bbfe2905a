"""OAuth scopes of API-client tokens: the vocabulary, what each route needs, role ceilings.

A scope only ever *narrows* a role: an API client's token carries its role (checked by
every route as for a user) and, optionally, a ``scope`` claim (space-separated, RFC 9068
§2.2.3). A token with a ``scope`` claim may call a route only if one of its scopes is the
one :func:`required_scope` names for that method and path; a route no scope names (the
API-client administration itself, the operator's audit log, ``/v1/auth/me``…) is closed to
scoped tokens. A token without the claim (users, and clients without narrower scopes) is
checked on its role alone.

The scope of a request is derived from its path (the first segment after ``/v1``) and its
method (``GET``/``HEAD``/``OPTIONS`` read, anything else writes), so this table stays in
step with the routes without a list of them: the gateway's early check
(``pytake_api_gateway.admission``) and every service's check
(:func:`pytake_common.security.current_principal`) call the same function.
"""

from __future__ import annotations

from collections.abc import Iterable

from pytake_common.errors import Forbidden

#: Path family (first segment after ``/v1``) -> resource name of its scopes.
RESOURCES: dict[str, str] = {
    "contacts": "contacts",
    "tags": "contacts",
    "contact-attributes": "contacts",
    "conversations": "conversations",
    "stream": "conversations",
    "canned-responses": "conversations",
    "organizations": "organization",
    "plans": "organization",
    "departments": "organization",
    "users": "users",
    "whatsapp": "whatsapp",
    "webhook-endpoints": "webhooks",
    "campaigns": "campaigns",
    "automation": "automation",
}

#: Sending WhatsApp messages: ``POST /v1/conversations`` (a proactive start) and
#: ``POST /v1/conversations/{id}/messages``. Not part of ``conversations:write``.
MESSAGES_SEND = "messages:send"

#: Every scope a client may hold (docs/permissions.md explains each).
SCOPES: frozenset[str] = frozenset(
    {f"{resource}:{access}" for resource in RESOURCES.values() for access in ("read", "write")}
    | {MESSAGES_SEND}
)

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_VIEWER = frozenset(
    {
        "contacts:read",
        "conversations:read",
        "organization:read",
        "whatsapp:read",
        "campaigns:read",
        "automation:read",
    }
)
_AGENT = _VIEWER | {"contacts:write", "conversations:write", "campaigns:write", MESSAGES_SEND}

#: The scopes a role can use at all: a client's scopes must stay within its role's.
ROLE_CEILINGS: dict[str, frozenset[str]] = {
    "viewer": _VIEWER,
    "agent": frozenset(_AGENT),
    "org_admin": SCOPES,
}


class InsufficientScope(Forbidden):
    code, title = "insufficient_scope", "Insufficient scope"


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs, or None when no scope opens it."""
    segments = path.strip("/").split("/")
    if len(segments) < 2 or segments[0] != "v1":
        return None
    resource = RESOURCES.get(segments[1])
    if resource is None:
        return None
    if (
        method == "POST"
        and segments[1] == "conversations"
        and (len(segments) == 2 or (len(segments) == 4 and segments[3] == "messages"))
    ):
        return MESSAGES_SEND
    return f"{resource}:{'read' if method in _READ_METHODS else 'write'}"


def allows(scopes: frozenset[str] | None, method: str, path: str) -> bool:
    """Whether a token's scopes (None: not narrowed) admit this request."""
    if scopes is None:
        return True
    needed = required_scope(method, path)
    return needed is not None and needed in scopes


def refusal(method: str, path: str) -> tuple[str | None, str]:
    """The scope a refused request lacked, and the problem's ``detail``."""
    needed = required_scope(method, path)
    if needed is None:
        return None, "this route is not open to scoped tokens"
    return needed, f"this token's scopes do not include {needed}"


def check_scope(scopes: frozenset[str] | None, method: str, path: str) -> None:
    """Raise 403 ``insufficient_scope`` unless the scopes admit this request."""
    if not allows(scopes, method, path):
        needed, detail = refusal(method, path)
        raise InsufficientScope(detail, required_scope=needed)


def parse_scope(value: object) -> frozenset[str] | None:
    """A ``scope`` claim (a space-separated string) as a set; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("scope must be a space-separated string")
    return frozenset(value.split())


def format_scope(scopes: Iterable[str]) -> str:
    return " ".join(sorted(scopes))


def unknown_scopes(scopes: Iterable[str]) -> list[str]:
    return sorted(set(scopes) - SCOPES)


def beyond_role(role: str, scopes: Iterable[str]) -> list[str]:
    """Scopes the role could not use anyway (a client may not be granted them)."""
    return sorted(set(scopes) - ROLE_CEILINGS.get(role, frozenset()))
