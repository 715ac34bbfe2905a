"""Events auth publishes (topics ``pytake.auth.user`` and ``pytake.auth.session``)."""

import uuid
from datetime import datetime

from pydantic import Field

from pytake_common.events import EventData

USER_TOPIC = "pytake.auth.user"
SESSION_TOPIC = "pytake.auth.session"


class AuthEvent(EventData):
    """An event auth publishes."""

    service = "auth"


class UserRegistered(AuthEvent):
    """A person signed up: a new organization exists with them as its ``org_admin``.

    tenants creates the organization from this event (subject = user id,
    tenantid = the new organization id).
    """

    event_type = "pytake.auth.user.registered.v1"
    topic = USER_TOPIC

    user_id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    full_name: str
    role: str
    organization_name: str


class SessionRevoked(AuthEvent):
    """A session ended before its time; its refresh tokens are dead.

    ``reason``: ``logout``, ``refresh_token_reuse`` (a used refresh token was
    presented again, so the session is presumed stolen) or ``password_changed``
    (the user changed their password: every other session of theirs ends). Access tokens already
    issued stay valid until they expire; consumers that must cut them off
    sooner can deny-list ``session_id`` (the ``sid`` claim) until then.

    An API client's secret generation is a session too (the ``sid`` of the tokens it
    obtained): ``api_client_secret_rotated`` and ``api_client_deleted`` end it, and then
    ``user_id`` is the client's id (the ``sub`` of its tokens).
    """

    event_type = "pytake.auth.session.revoked.v1"
    topic = SESSION_TOPIC

    session_id: uuid.UUID
    user_id: uuid.UUID = Field(description="the token's subject: a user, or an API client")
    organization_id: uuid.UUID
    reason: str = Field(
        description="logout | refresh_token_reuse | password_changed | "
        "api_client_secret_rotated | api_client_deleted (more may be added)"
    )


class UserCreated(AuthEvent):
    """An administrator added a user to an existing organization."""

    event_type = "pytake.auth.user.created.v1"
    topic = USER_TOPIC

    user_id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    full_name: str
    role: str
    is_active: bool


class UserUpdated(AuthEvent):
    """A user's profile or role changed; ``changed`` names the fields that did."""

    event_type = "pytake.auth.user.updated.v1"
    topic = USER_TOPIC

    user_id: uuid.UUID
    organization_id: uuid.UUID
    full_name: str
    role: str
    is_active: bool
    changed: list[str]


class UserActivated(AuthEvent):
    event_type = "pytake.auth.user.activated.v1"
    topic = USER_TOPIC

    user_id: uuid.UUID
    organization_id: uuid.UUID


class UserDeactivated(AuthEvent):
    """The user can no longer sign in (``user.sessions_revoked`` follows for their tokens)."""

    event_type = "pytake.auth.user.deactivated.v1"
    topic = USER_TOPIC

    user_id: uuid.UUID
    organization_id: uuid.UUID


class UserDeleted(AuthEvent):
    """The user was removed (soft: the id stays known, the e-mail is anonymised)."""

    event_type = "pytake.auth.user.deleted.v1"
    topic = USER_TOPIC

    user_id: uuid.UUID
    organization_id: uuid.UUID


class UserSessionsRevoked(AuthEvent):
    """Every session of the user ended: access tokens issued before ``revoked_before``
    (their ``iat``) must be refused from now on."""

    event_type = "pytake.auth.user.sessions_revoked.v1"
    topic = USER_TOPIC

    user_id: uuid.UUID
    organization_id: uuid.UUID
    reason: str = Field(
        description="deactivated | password_changed | role_changed | deleted | admin"
    )
    revoked_before: datetime
