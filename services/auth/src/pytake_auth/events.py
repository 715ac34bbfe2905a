"""Events auth publishes (topics ``pytake.auth.user`` and ``pytake.auth.session``)."""

import uuid

from pydantic import Field

from pytake_common.events import EventData

USER_TOPIC = "pytake.auth.user"
SESSION_TOPIC = "pytake.auth.session"


class UserRegistered(EventData):
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


class SessionRevoked(EventData):
    """A session ended before its time; its refresh tokens are dead.

    ``reason``: ``logout`` or ``refresh_token_reuse`` (a used refresh token was
    presented again, so the session is presumed stolen). Access tokens already
    issued stay valid until they expire; consumers that must cut them off
    sooner can deny-list ``session_id`` (the ``sid`` claim) until then.
    """

    event_type = "pytake.auth.session.revoked.v1"
    topic = SESSION_TOPIC

    session_id: uuid.UUID
    user_id: uuid.UUID
    organization_id: uuid.UUID
    reason: str = Field(description="logout | refresh_token_reuse (more may be added)")
