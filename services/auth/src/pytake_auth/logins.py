"""Password login: throttle, verify, record, open a session.

Login is the one hot path of auth and argon2 already takes most of its CPU, so
the work around it is kept lean: two short transactions on raw asyncpg
(:mod:`pytake_common.rawpg`) with prebuilt SQL text, no connection held while hashing.

1. Before verifying: the throttle (every attempt per client address, counted;
   failed guesses, checked: see :meth:`Logins.refusal`) and the user's lookup, in
   one transaction. The tenant is unknown until the e-mail is found: the one
   cross-tenant read.
2. After: bound to the user's organization, one statement records the login (and
   a rehash), opens the session and stores its first refresh token (its sha256,
   never the token), only if the user is still active with the password that was
   verified; the failures of this e-mail from this source, and the e-mail's own,
   are forgotten in the same transaction.

Failed guesses are throttled so that a stranger cannot lock the owner out by
knowing their address: per (e-mail, source) pair, so the guesser is stopped; per
e-mail for sources that already failed against it, so guessing from many sources
gets about one try per source; and a ceiling per e-mail for everyone, so a botnet
gets a bounded number of guesses. A source that never failed against the e-mail
(the owner at their usual address) passes the first two and is stopped only by
the ceiling, which takes about as many sources as its limit.

Unknown e-mails verify against a dummy hash and are answered like a wrong password
or a deactivated account, and their failures count the same.

Both transactions commit without waiting for the WAL flush (``durable=False``): what
a database crash could lose is throttle counts and a session just opened (its tokens
then fail like those of an expired session: the user signs in again), never a
revocation or a password change, which commit durably elsewhere. It saves the
flush's wait twice per login and most of the database's CPU for it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from pytake_auth.config import Settings
from pytake_auth.domain import InvalidCredentials, normalize_email, normalize_password
from pytake_auth.keys import KeyRing, SigningKey
from pytake_auth.passwords import Passwords
from pytake_auth.store import User
from pytake_auth.throttle import Rule, Rules, Throttle, Throttled
from pytake_auth.tokens import new_refresh_token
from pytake_common import rawpg as pg
from pytake_common.db import Database

_USER_COLUMNS = "id, organization_id, email, full_name, role, is_active, password_hash"

_FIND_USER = f"SELECT {_USER_COLUMNS} FROM users WHERE email = $1"  # noqa: S608 (constant)

# The update locks the user's row, so nothing can deactivate or re-password them until
# the login commits; the inserts read from it and so happen only when it matched.
_OPEN_SESSION = f"""
WITH login AS (
    UPDATE users
    SET last_login_at = now(),
        password_hash = coalesce($4, password_hash),
        updated_at = CASE WHEN $4 IS NULL THEN updated_at ELSE now() END
    WHERE organization_id = $1 AND id = $2 AND is_active AND password_hash = $3
    RETURNING {_USER_COLUMNS}
), opened AS (
    INSERT INTO sessions (id, organization_id, user_id, expires_at)
    SELECT $5, organization_id, id, now() + make_interval(secs => $6) FROM login
    RETURNING id, organization_id, user_id, expires_at
), issued AS (
    INSERT INTO refresh_tokens (id, organization_id, session_id, user_id, token_hash, expires_at)
    SELECT $7, organization_id, id, user_id, $8,
           least(now() + make_interval(secs => $9), expires_at)
    FROM opened
)
SELECT {_USER_COLUMNS} FROM login
"""  # noqa: S608 (constant)


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    session_id: uuid.UUID
    refresh_token: str
    key: SigningKey


class Logins:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        keys: KeyRing,
        passwords: Passwords,
        throttle: Throttle,
        rules: Rules,
    ) -> None:
        self.settings = settings
        self.db = db
        self.keys = keys
        self.passwords = passwords
        self.throttle = throttle
        self.rules = rules

    async def login(self, email: str, password: str, client: str) -> SignedIn:
        """Sign ``email`` in from ``client``; raise :class:`Throttled` or
        :class:`InvalidCredentials`."""
        email = normalize_email(email)
        found = await self._admit(email, client)
        password = normalize_password(password)
        matches = await self.passwords.verify(found.password_hash if found else None, password)
        if found is None or not matches or not found.is_active:
            await self.count_failure(email, client)
            raise InvalidCredentials()
        new_hash = (
            await self.passwords.hash(password)
            if self.passwords.needs_rehash(found.password_hash)
            else None
        )
        key = await self.keys.signing_key()
        opened = await self._open_session(found, new_hash, email, client)
        # Deactivated or re-passworded while we were hashing: refuse like any mismatch.
        if opened is None:
            raise InvalidCredentials()
        user, session_id, refresh_token = opened
        return SignedIn(user, session_id, refresh_token, key)

    def _failure_subjects(self, email: str, source: str) -> tuple[tuple[Rule, str], ...]:
        rules = self.rules
        return (
            (rules.login_failures_per_source, f"{email} {source}"),
            (rules.login_failures_per_email, email),
            (rules.login_failures_ceiling, email),
        )

    async def refusal(self, conn: asyncpg.Connection, email: str, source: str) -> int | None:
        """``Retry-After`` when ``source`` may not guess ``email``'s password now, else None.

        The per-e-mail limit applies only to a source that failed against the e-mail
        itself: a stranger's failures elsewhere never stop the owner's right password.
        """
        pair, per_email, ceiling = await self.throttle.levels(
            conn, *self._failure_subjects(email, source)
        )
        applicable = (pair, ceiling, per_email) if pair.hits > 0 else (pair, ceiling)
        waits = [level.retry_after for level in applicable if level.retry_after is not None]
        return max(waits, default=None)

    async def check_guess(self, email: str, source: str) -> None:
        """Raise :class:`Throttled` when ``source`` may not guess ``email``'s password now."""
        async with pg.transaction(self.db, durable=False) as conn:
            retry = await self.refusal(conn, email, source)
        if retry is not None:
            raise Throttled(retry)

    async def count_failure(self, email: str, source: str) -> None:
        """Count a failed password check against ``email`` (normalized) from ``source``."""
        # Each rule counts on its own: the check before verifying already refused
        # callers over a limit that applies to them (a full per-e-mail window does not
        # stop a fresh source's failure from counting for its pair and the ceiling).
        async with pg.transaction(self.db, durable=False) as conn:
            for rule, subject in self._failure_subjects(email, source):
                await self.throttle.take(conn, (rule, subject, True))

    async def _admit(self, email: str, client: str) -> User | None:
        async with pg.transaction(self.db, bypass_rls=True, durable=False) as conn:
            retry = await self.throttle.take(conn, (self.rules.login_per_address, client, True))
            if retry is None:
                retry = await self.refusal(conn, email, client)
            # Commit the address' count before refusing.
            row = None if retry is not None else await conn.fetchrow(_FIND_USER, email)
        if retry is not None:
            raise Throttled(retry)
        return User(*row) if row is not None else None

    async def _open_session(
        self, found: User, new_password_hash: str | None, email: str, client: str
    ) -> tuple[User, uuid.UUID, str] | None:
        session_id = uuid.uuid4()
        token, token_hash = new_refresh_token()
        async with pg.transaction(self.db, found.organization_id, durable=False) as conn:
            row = await conn.fetchrow(
                _OPEN_SESSION,
                found.organization_id,
                found.id,
                found.password_hash,
                new_password_hash,
                session_id,
                float(self.settings.session_max_age_s),
                uuid.uuid4(),
                token_hash,
                float(self.settings.refresh_token_ttl_s),
            )
            if row is None:
                return None
            # A successful sign-in forgets this source's and the e-mail's earlier failures
            # (not the ceiling's: the owner signing in must not refund a botnet's guesses).
            pair, per_email, _ = self._failure_subjects(email, client)
            await self.throttle.forget(conn, pair, per_email)
        return User(*row), session_id, token
