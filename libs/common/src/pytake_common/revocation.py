"""Revoked sessions and users, replicated from auth's events into every process.

Access tokens are short-lived and verified offline; revocation closes the gap:
logout, refresh-token reuse, deactivation, deletion, password and role changes
reach every gateway and service replica through Kafka within about a second,
without a call to auth per request.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

from pytake_common.event_types import (
    AUTH_SESSION_REVOKED_V1,
    AUTH_SESSION_TOPIC,
    AUTH_USER_DEACTIVATED_V1,
    AUTH_USER_DELETED_V1,
    AUTH_USER_SESSIONS_REVOKED_V1,
    AUTH_USER_TOPIC,
)
from pytake_common.events import CloudEvent
from pytake_common.replica import BroadcastReplica
from pytake_common.settings import ServiceSettings


class RevocationList(BroadcastReplica):
    def __init__(self, settings: ServiceSettings, max_token_age_s: float = 24 * 3600) -> None:
        super().__init__(settings, [AUTH_SESSION_TOPIC, AUTH_USER_TOPIC], "revocations")
        self.max_token_age_s = max_token_age_s
        self.sessions: dict[str, float] = {}  # session id -> when it was revoked (epoch s)
        self.users: dict[str, float] = {}  # user id -> tokens issued before this are dead

    def handlers(self) -> dict[str, Any]:
        return {
            AUTH_SESSION_REVOKED_V1: self._session,
            AUTH_USER_SESSIONS_REVOKED_V1: self._user,
            AUTH_USER_DEACTIVATED_V1: self._user,
            AUTH_USER_DELETED_V1: self._user,
        }

    def _session(self, event: CloudEvent) -> None:
        sid = str(event.data["session_id"])
        self.sessions[_norm(sid)] = event.time.timestamp()
        self._prune()

    def _user(self, event: CloudEvent) -> None:
        user = str(uuid.UUID(str(event.data["user_id"])))
        before = event.data.get("revoked_before")
        cutoff = datetime.fromisoformat(before).timestamp() if before else event.time.timestamp()
        self.users[user] = max(self.users.get(user, 0.0), cutoff)

    def _prune(self) -> None:
        if len(self.sessions) < 10_000:
            return
        horizon = time.time() - self.max_token_age_s
        self.sessions = {k: v for k, v in self.sessions.items() if v >= horizon}

    def is_revoked(self, claims: dict[str, Any]) -> bool:
        sid = claims.get("sid")
        if sid and _norm(str(sid)) in self.sessions:
            return True
        cutoff = self.users.get(str(claims.get("sub", "")))
        return cutoff is not None and float(claims.get("iat", 0)) < cutoff


def _norm(session_id: str) -> str:
    """Session ids compare as UUIDs when they are UUIDs (hex vs dashed spellings)."""
    try:
        return uuid.UUID(session_id).hex
    except ValueError:
        return session_id
