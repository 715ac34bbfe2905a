"""The gateway's routing table: path prefix -> upstream service, and the public routes.

Prefixes match on whole path segments (``/v1/contacts`` matches ``/v1/contacts``
and ``/v1/contacts/...``, never ``/v1/contactsX``). Matching is a dictionary
lookup per distinct prefix depth, not a scan of the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytake_api_gateway.config import Settings

AUTH = "auth"
TENANTS = "tenants"
CONTACTS = "contacts"
CONVERSATIONS = "conversations"
WHATSAPP = "whatsapp-gateway"
INTEGRATIONS = "integrations"
AUTOMATION = "automation"
CAMPAIGNS = "campaigns"

WEBHOOK_PATH = "/webhooks/whatsapp"
IMPORT_PATH = "/v1/contacts/import"

#: (prefix, upstream) — the contract in ARCHITECTURE.md.
ROUTES: tuple[tuple[str, str], ...] = (
    ("/v1/auth", AUTH),
    ("/v1/users", AUTH),
    ("/v1/api-clients", AUTH),
    ("/.well-known/jwks.json", AUTH),
    ("/v1/organizations", TENANTS),
    ("/v1/plans", TENANTS),
    ("/v1/departments", TENANTS),
    ("/v1/audit-log", TENANTS),
    ("/v1/contacts", CONTACTS),
    ("/v1/tags", CONTACTS),
    ("/v1/contact-attributes", CONTACTS),
    ("/v1/conversations", CONVERSATIONS),
    ("/v1/stream", CONVERSATIONS),
    ("/v1/canned-responses", CONVERSATIONS),
    ("/v1/whatsapp", WHATSAPP),
    (WEBHOOK_PATH, WHATSAPP),
    ("/v1/webhook-endpoints", INTEGRATIONS),
    ("/v1/automation", AUTOMATION),
    ("/v1/campaigns", CAMPAIGNS),
)

#: (method, exact path) reachable without a bearer token; everything else needs one.
PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/v1/auth/register"),
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/auth/refresh"),
        ("POST", "/v1/auth/token"),
        ("GET", "/.well-known/jwks.json"),
        ("GET", WEBHOOK_PATH),
        ("POST", WEBHOOK_PATH),
    }
)


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str  # scheme://host[:port][/base], no trailing slash


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One prefix of the table; ``path`` doubles as the metrics route label."""

    path: str
    upstream: Upstream
    body_limit: int


def _depth(prefix: str) -> int:
    return prefix.count("/")


class RoutingTable:
    def __init__(
        self,
        entries: Iterable[RouteEntry],
        body_limits: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self.entries = tuple(entries)
        #: (method, exact path) -> body limit, where a route differs from its prefix.
        self.body_limits = dict(body_limits or {})
        self._by_prefix = {e.path: e for e in self.entries}
        if len(self._by_prefix) != len(self.entries):
            raise ValueError("duplicate prefix in the routing table")
        for prefix in self._by_prefix:
            if not prefix.startswith("/") or prefix.endswith("/"):
                raise ValueError(f"bad prefix {prefix!r}")
        # Longest prefixes first, so a deeper prefix wins over a shallower one.
        self._depths = tuple(sorted({_depth(p) for p in self._by_prefix}, reverse=True))

    @classmethod
    def from_settings(cls, settings: Settings) -> RoutingTable:
        upstreams = {name: Upstream(name, url) for name, url in settings.upstream_urls().items()}
        entries = (
            RouteEntry(
                prefix,
                upstreams[name],
                settings.webhook_body_limit_bytes
                if prefix == WEBHOOK_PATH
                else settings.api_body_limit_bytes,
            )
            for prefix, name in ROUTES
        )
        return cls(entries, {("POST", IMPORT_PATH): settings.import_body_limit_bytes})

    @property
    def upstreams(self) -> tuple[Upstream, ...]:
        seen: dict[str, Upstream] = {}
        for entry in self.entries:
            seen.setdefault(entry.upstream.name, entry.upstream)
        return tuple(seen.values())

    def match(self, path: str) -> RouteEntry | None:
        by_prefix = self._by_prefix
        for depth in self._depths:
            # The first ``depth`` segments of the path: "/v1/contacts/x" -> "/v1/contacts".
            end = 0
            for _ in range(depth):
                end = path.find("/", end + 1)
                if end < 0:
                    break
            entry = by_prefix.get(path if end < 0 else path[:end])
            if entry is not None:
                return entry
        return None


def is_public(method: str, path: str) -> bool:
    return (method, path) in PUBLIC_ROUTES


def has_dot_segment(path: str) -> bool:
    """``.`` or ``..`` as a whole segment: never forwarded (no escaping a prefix)."""
    if "/." not in path:
        return False
    return any(seg in (".", "..") for seg in path.split("/"))
