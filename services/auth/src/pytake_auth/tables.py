"""Auth's tables. ``users``, ``sessions``, ``refresh_tokens``, ``api_clients`` and
``audit_log`` are tenant-owned (RLS); ``signing_keys`` and ``throttle_buckets`` are
platform-wide."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from pytake_common.db import new_metadata

metadata = new_metadata()

ROLES = ("super_admin", "org_admin", "agent", "viewer")

users = Table(
    "users",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False, index=True),
    # Unique platform-wide; stored lowercased (the check keeps it so).
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("full_name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("last_login_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Soft deletion: the row stays (other services' events reference it), the e-mail
    # is anonymised, the account can never sign in again.
    Column("deleted_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("email = lower(email)", name="email_lowercase"),
    CheckConstraint("role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")", name="role_known"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column(
        "user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("refreshed_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revoked_reason", String(40), nullable=True),
    Index("ix_sessions_organization_id_user_id", "organization_id", "user_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column(
        "session_id",
        UUID(as_uuid=True),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    # sha256 (hex) of the opaque token; the token itself is never stored.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column(
        "rotated_from",
        UUID(as_uuid=True),
        ForeignKey("refresh_tokens.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    # RFC 7638 thumbprint of the public key.
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False, server_default="EdDSA"),
    # PKCS#8 PEM, encrypted with SecretBox (PYTAKE_SECRET_KEY).
    Column("private_key_encrypted", Text, nullable=False),
    Column("public_jwk", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Signs from not_before (published earlier so caches know it) until retired_at.
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("retired_at", DateTime(timezone=True), nullable=True),
)

#: Sliding-window counters of the throttle (platform-wide; see ``throttle.py``).
throttle_buckets = Table(
    "throttle_buckets",
    metadata,
    # sha256 (hex) of "<rule>:<subject>": e-mails and addresses are not stored in clear.
    Column("bucket", String(64), primary_key=True),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("hits", Integer, nullable=False),
    Column("previous_hits", Integer, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

#: The roles an API client may hold (never ``super_admin``: an operator is a person).
CLIENT_ROLES = ("org_admin", "agent", "viewer")

#: Machine credentials of an organization (see ``clients.py``).
api_clients = Table(
    "api_clients",
    metadata,
    # Also the public ``client_id`` and the ``sub`` of its tokens.
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    # Narrower scopes than the role's (pytake_common.scopes); NULL: the role's.
    Column("scopes", ARRAY(Text), nullable=True),
    # sha256 (hex) of the secret; the secret itself is never stored.
    Column("secret_hash", String(64), nullable=False),
    # The secret's generation, the ``sid`` of the tokens it obtains: revoked (as a
    # session) when the secret is rotated or the client deleted.
    Column("secret_id", UUID(as_uuid=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("created_by", UUID(as_uuid=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("secret_rotated_at", DateTime(timezone=True), nullable=True),
    # The last token issued (written at most once a minute).
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    # Soft deletion: messages and audit rows keep referring to the id.
    Column("deleted_at", DateTime(timezone=True), nullable=True),
    CheckConstraint(
        "role IN (" + ", ".join(f"'{r}'" for r in CLIENT_ROLES) + ")", name="role_allowed"
    ),
    Index("ix_api_clients_listing", "organization_id", "created_at", "id"),
)

#: Who did what in auth (API clients today): appended, never updated.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    # ``user`` or ``api_client`` (a token request is its client's own act)
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", UUID(as_uuid=True), nullable=False),
    # e.g. ``api_client.created``, ``api_client.token_refused``
    Column("action", String(60), nullable=False),
    Column("target_type", String(40), nullable=False),
    Column("target_id", UUID(as_uuid=True), nullable=False),
    Column("detail", JSONB, nullable=True),
    Column("source_address", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_audit_log_target", "organization_id", "target_id", "id"),
)

TENANT_TABLES = ("users", "sessions", "refresh_tokens", "api_clients", "audit_log")
