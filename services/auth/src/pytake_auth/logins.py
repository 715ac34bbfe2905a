"""Password login: throttle, verify, record, open a session.

Login is the one hot path of auth and argon2 already takes most of its CPU, so
the work around it is kept lean: two short transactions on raw asyncpg
(:mod:`pytake_common.rawpg`) with prebuilt SQL text, no connection held while hashing.

1. Before verifying: the throttle (every attempt per client address, counted;
   the guess, counted as a failure unless refused: see :meth:`Logins.reserve`) and
   the user's lookup, in one transaction. The tenant is unknown until the e-mail is found: the one
   cross-tenant read.
2. After: bound to the user's organization, one statement records the login (and
   a rehash), opens the session and stores its first refresh token (its sha256,
   never the token), only if the user is still active with the password that was
   verified; the failure reserved for it is refunded, the failures of this e-mail
   from this source, and the e-mail's own, are forgotten, and the source is marked
   as known, in the same transaction.

Failed guesses are throttled so that a stranger cannot lock the owner out by
knowing their address: per (e-mail, source) pair, so the guesser is stopped; per
e-mail for sources whose network (/24 for IPv4, /48 for IPv6) already failed
against it, so guessing from many networks gets about one try per network (a host
rotating through the /64s of its /48 gets no more); and a ceiling per e-mail, so
a botnet gets a bounded number of guesses, which takes about as many networks as
its limit to reach. A source that signed in to the e-mail before (a marker kept
for ``throttle_login_known_source_ttl_s``) is exempt from both: the owner at a
usual address is never locked out; at a brand-new address, only while the
ceiling is full.

A guess is counted as a failure *before* its password is verified, with the
counters' rows locked (:meth:`Logins.reserve`), and refunded when it is right: N
concurrent guesses cannot all pass a check that none of them has counted yet.

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
from datetime import datetime

import asyncpg

from pytake_auth.config import Settings
from pytake_auth.domain import InvalidCredentials, normalize_email, normalize_password
from pytake_auth.keys import KeyRing, SigningKey
from pytake_auth.passwords import Passwords
from pytake_auth.store import User
from pytake_auth.throttle import Rules, Throttle, Throttled, ceiling_group
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
class Reservation:
    """The failure counted for a guess before it was verified: ``(bucket,
    window_start)`` of each hit, refunded if the guess is right."""

    counted: tuple[tuple[str, datetime], ...]


NOTHING_RESERVED = Reservation(())


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
        found, reserved = await self._admit(email, client)
        password = normalize_password(password)
        matches = await self.passwords.verify(found.password_hash if found else None, password)
        if found is None or not matches or not found.is_active:
            raise InvalidCredentials()  # the failure was counted before verifying
        new_hash = (
            await self.passwords.hash(password)
            if self.passwords.needs_rehash(found.password_hash)
            else None
        )
        key = await self.keys.signing_key()
        opened = await self._open_session(found, new_hash, email, client, reserved)
        # Deactivated or re-passworded while we were hashing: refuse like any mismatch.
        if opened is None:
            raise InvalidCredentials()
        user, session_id, refresh_token = opened
        return SignedIn(user, session_id, refresh_token, key)

    async def reserve(
        self, conn: asyncpg.Connection, email: str, source: str
    ) -> tuple[int | None, Reservation]:
        """Count a failed guess of ``email``'s password from ``source`` *before* it is
        verified, or refuse it: ``(Retry-After, nothing counted)`` when ``source`` may
        not guess now, else ``(None, what was counted)`` (refunded when the guess is
        right). Every bucket is locked first, so concurrent guesses queue: N at once
        cannot all pass a check made before any of them counts.

        The per-e-mail limit applies only to a source whose network (its /24 or /48,
        :func:`ceiling_group`) failed against the e-mail itself: a stranger's failures
        elsewhere never stop the owner's right password, and a host cannot rotate
        through the 65,536 /64s of its /48 to fill the ceiling alone. Neither the
        per-e-mail limit nor the ceiling applies to a source that signed in to the
        e-mail before.
        """
        throttle, rules = self.throttle, self.rules
        if not throttle.enabled:
            return None, NOTHING_RESERVED
        # Always this order (pair, e-mail, group, ceiling): no two logins lock in a cycle.
        pair = await throttle.lock(conn, rules.login_failures_per_source, f"{email} {source}")
        per_email = await throttle.lock(conn, rules.login_failures_per_email, email)
        group = await throttle.lock(
            conn, rules.login_failures_per_group, f"{email} {ceiling_group(source)}"
        )
        ceiling = await throttle.lock(conn, rules.login_failures_ceiling, email)
        known = await throttle.marked(conn, rules.login_known_source, f"{email} {source}")
        applicable = [pair]
        if not known:
            if pair.hits > 0 or group.hits > 0:
                applicable.append(per_email)
            applicable.append(ceiling)
        waits = [retry for level in applicable if (retry := level.retry_after()) is not None]
        if waits:
            return max(waits), NOTHING_RESERVED
        counted = (pair, per_email, group, ceiling)
        for level in counted:
            await throttle.count(conn, level)
        return None, Reservation(tuple((level.bucket, level.window_start) for level in counted))

    async def reserve_guess(self, email: str, source: str) -> Reservation:
        """:meth:`reserve` in its own transaction; raise :class:`Throttled` when refused.
        Give the result to :meth:`refund` if the guess turns out right."""
        async with pg.transaction(self.db, durable=False) as conn:
            retry, reserved = await self.reserve(conn, email, source)
        if retry is not None:
            raise Throttled(retry)
        return reserved

    async def refund(self, reserved: Reservation) -> None:
        """The guess was right: take back the failure counted for it."""
        if reserved.counted:
            async with pg.transaction(self.db, durable=False) as conn:
                await self.throttle.refund(conn, reserved.counted)

    async def _admit(self, email: str, client: str) -> tuple[User | None, Reservation]:
        async with pg.transaction(self.db, bypass_rls=True, durable=False) as conn:
            retry = await self.throttle.take(conn, (self.rules.login_per_address, client, True))
            reserved = NOTHING_RESERVED
            if retry is None:
                retry, reserved = await self.reserve(conn, email, client)
            # Commit the address' count before refusing.
            row = None if retry is not None else await conn.fetchrow(_FIND_USER, email)
        if retry is not None:
            raise Throttled(retry)
        return (User(*row) if row is not None else None), reserved

    async def _open_session(
        self,
        found: User,
        new_password_hash: str | None,
        email: str,
        client: str,
        reserved: Reservation,
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
            # A successful sign-in takes back the failure reserved for it, forgets this
            # source's and the e-mail's earlier failures (not the ceiling's: the owner
            # signing in must not refund a botnet's guesses), and marks the source as
            # known (exempt from the ceiling from now on).
            rules = self.rules
            await self.throttle.refund(conn, reserved.counted)
            await self.throttle.forget(
                conn,
                (rules.login_failures_per_source, f"{email} {client}"),
                (rules.login_failures_per_email, email),
            )
            await self.throttle.mark(conn, rules.login_known_source, f"{email} {client}")
        return User(*row), session_id, token
