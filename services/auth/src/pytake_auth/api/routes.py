"""HTTP API of auth: register, login, refresh, logout, me (profile and password), the JWKS.

Register, login and refresh are throttled per account and per client address
(:mod:`pytake_auth.throttle`): 429 ``rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Annotated, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_auth import directory, store
from pytake_auth.api.deps import ClientAddress, RulesDep, ThrottleDep, client_address
from pytake_auth.api.schemas import (
    JWKS,
    ChangePasswordRequest,
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    UpdateMeRequest,
    User,
)
from pytake_auth.config import Settings
from pytake_auth.domain import (
    REGISTRANT_ROLE,
    EmailTaken,
    InvalidCurrentPassword,
    InvalidRefreshToken,
    SessionEnded,
    check_password_policy,
    normalize_email,
    normalize_password,
)
from pytake_auth.events import UserRegistered, UserUpdated
from pytake_auth.keys import KeyRing, SigningKey
from pytake_auth.logins import Logins
from pytake_auth.passwords import Passwords
from pytake_auth.tokens import hash_refresh_token, mint_access_token
from pytake_common.crypto import SecretBox, SecretDecryptionError
from pytake_common.db import Database
from pytake_common.errors import NotFound, ServiceUnavailable
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, idempotent
from pytake_common.ids import PYTAKE_NAMESPACE
from pytake_common.outbox import emit
from pytake_common.security import CurrentPrincipal, Principal
from pytake_common.web import request_db

router = APIRouter(prefix="/v1/auth", tags=["auth"])
jwks_router = APIRouter(tags=["auth"])

#: Registrations are anonymous: their Idempotency-Keys live under the nil organization,
#: scoped per e-mail (see :class:`Registrations`).
ANONYMOUS = uuid.UUID(int=0)
#: Token responses must never be cached (RFC 6749 §5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _problem(*codes: str) -> dict[str, Any]:
    return {
        "description": "problem+json with `code` " + " or ".join(f"`{c}`" for c in codes),
        "content": {"application/problem+json": {}},
    }


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _keys(request: Request) -> KeyRing:
    keys: KeyRing = request.app.state.keys
    return keys


async def _passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


async def _logins(request: Request) -> Logins:
    logins: Logins = request.app.state.logins
    return logins


DB = Annotated[Database, Depends(request_db)]
Config = Annotated[Settings, Depends(_settings)]
Keys = Annotated[KeyRing, Depends(_keys)]
PasswordService = Annotated[Passwords, Depends(_passwords)]
LoginService = Annotated[Logins, Depends(_logins)]


# -- JWKS ---------------------------------------------------------------------


@jwks_router.get("/.well-known/jwks.json", response_model=JWKS)
async def jwks(keys: Keys, settings: Config) -> Response:
    """Public keys that verify access tokens (signing now, about to, or recently retired)."""
    return JSONResponse(
        await keys.jwks(),
        headers={"Cache-Control": f"public, max-age={settings.jwks_max_age_s}"},
    )


# -- helpers ------------------------------------------------------------------


def _token_body(
    settings: Settings, key: SigningKey, user: store.User, session_id: uuid.UUID, refresh_token: str
) -> dict[str, Any]:
    access = mint_access_token(
        key,
        settings,
        user_id=user.id,
        organization_id=user.organization_id,
        role=user.role,
        session_id=session_id,
    )
    return TokenResponse(
        access_token=access,
        refresh_token=refresh_token,
        expires_in=settings.access_token_ttl_s,
        user=_user(user),
    ).model_dump(mode="json")


def _user(user: store.User) -> User:
    return User(
        id=user.id,
        email=user.email,
        full_name=user.full_name,
        role=user.role,
        organization_id=user.organization_id,
    )


def _tokens(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=NO_STORE)


class Registrations:
    """Idempotency of anonymous registrations.

    The key is scoped by a hash of the e-mail (two strangers using the same key
    never meet). The request fingerprint is an HMAC, not a bare hash, because
    the body holds the password; the stored answer holds live tokens, so it is
    kept encrypted.
    """

    def __init__(self, secret: str) -> None:
        first = secret.split(",")[0].strip()
        self._mac_key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"pytake:auth-idempotency-fingerprint",
        ).derive(first.encode())
        self._box = SecretBox(secret, purpose="auth-idempotency-responses")

    @staticmethod
    def principal(email: str) -> uuid.UUID:
        return uuid.uuid5(PYTAKE_NAMESPACE, f"auth:register:{email}")

    def fingerprint(self, body: dict[str, Any], path: str = "/v1/auth/register") -> str:
        raw = json.dumps(["POST", path, body], sort_keys=True).encode()
        return hmac.new(self._mac_key, raw, hashlib.sha256).hexdigest()

    def seal(self, body: dict[str, Any]) -> dict[str, str]:
        return {"sealed": self._box.encrypt(json.dumps(body))}

    def unseal(self, stored: Any) -> dict[str, Any]:
        try:
            body: dict[str, Any] = json.loads(self._box.decrypt(stored["sealed"]))
        except (SecretDecryptionError, KeyError, TypeError, ValueError) as exc:
            raise ServiceUnavailable(
                "the stored answer to this Idempotency-Key is unreadable "
                "(was the secret key rotated?)"
            ) from exc
        return body


async def _registrations(request: Request) -> Registrations:
    registrations: Registrations = request.app.state.registrations
    return registrations


RegistrationGuard = Annotated[Registrations, Depends(_registrations)]


# -- endpoints ----------------------------------------------------------------


@router.post(
    "/register",
    status_code=201,
    response_model=TokenResponse,
    responses={
        409: _problem("email_taken"),
        422: _problem("weak_password", "invalid_input"),
        429: _problem("rate_limited"),
    },
)
async def register(
    body: RegisterRequest,
    db: DB,
    settings: Config,
    keys: Keys,
    passwords: PasswordService,
    registrations: RegistrationGuard,
    throttle: ThrottleDep,
    rules: RulesDep,
    client: ClientAddress,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Sign up: a new organization with the caller as its ``org_admin``; returns tokens.

    The organization itself is created by the tenants service from the
    ``pytake.auth.user.registered.v1`` event a moment later; tenants'
    ``/v1/organizations/me`` routes wait for it (a few seconds at most), so a client
    may read it right away. Its id is ``user.organization_id`` here.
    """
    email = normalize_email(body.email)
    await throttle.gate(
        (rules.register_per_address, client, True), (rules.register_per_email, email, True)
    )
    password = normalize_password(body.password)
    check_password_policy(password, email)
    fingerprint = registrations.fingerprint(
        {
            "email": email,
            "password": password,
            "full_name": body.full_name,
            "organization_name": body.organization_name,
        }
    )
    password_hash = await passwords.hash(password)  # before the transaction: holds no connection
    key = await keys.signing_key()
    user = store.User(
        id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        email=email,
        full_name=body.full_name,
        role=REGISTRANT_ROLE,
        is_active=True,
        password_hash=password_hash,
    )
    # Bound to the new organization: the insert needs no cross-tenant read (the
    # unique index on email answers ON CONFLICT whatever RLS hides).
    async with db.transaction(organization_id=user.organization_id) as session:
        guard = IdempotencyGuard(
            session,
            ANONYMOUS,
            registrations.principal(email),
            idempotency_key,
            fingerprint,
            box=registrations,  # the answer holds live tokens: stored encrypted
        )

        async def open_account() -> dict[str, Any]:
            created = await store.insert_user(
                session,
                user_id=user.id,
                organization_id=user.organization_id,
                email=email,
                password_hash=password_hash,
                full_name=user.full_name,
                role=user.role,
            )
            if not created:
                raise EmailTaken("an account with this email already exists")
            session_id, refresh_token = await store.open_session(session, settings, user)
            await _emit_registered(session, user, body.organization_name)
            return _token_body(settings, key, user, session_id, refresh_token)

        answer = await idempotent(guard, 201, open_account)
    return answer.response(NO_STORE)


async def _emit_registered(session: AsyncSession, user: store.User, organization_name: str) -> None:
    payload = UserRegistered(
        user_id=user.id,
        organization_id=user.organization_id,
        email=user.email,
        full_name=user.full_name,
        role=user.role,
        organization_name=organization_name,
    )
    await emit(session, payload, user.id)


@router.post(
    "/login",
    response_model=TokenResponse,
    responses={401: _problem("invalid_credentials"), 429: _problem("rate_limited")},
)
async def login(body: LoginRequest, request: Request) -> Response:
    """Exchange an email and password for an access token and a refresh token.

    Throttled per client address (every attempt) and, for failures only (known
    e-mail or not: the answer never tells whether an address is registered), per
    (e-mail, client address), per e-mail for client addresses that failed against it,
    and by a higher ceiling per e-mail: a stranger's failures do not stop the owner's
    right password from another address.
    """
    # The hot path takes no dependencies (FastAPI spends tens of microseconds solving
    # each): the login service and the client address come straight from the request.
    logins: Logins = request.app.state.logins
    signed = await logins.login(body.email, body.password, await client_address(request))
    return _tokens(
        200,
        _token_body(
            logins.settings, signed.key, signed.user, signed.session_id, signed.refresh_token
        ),
    )


@router.post(
    "/refresh",
    response_model=TokenResponse,
    responses={401: _problem("invalid_refresh_token"), 429: _problem("rate_limited")},
)
async def refresh(
    body: RefreshRequest,
    db: DB,
    settings: Config,
    keys: Keys,
    throttle: ThrottleDep,
    rules: RulesDep,
    client: ClientAddress,
) -> Response:
    """Spend a refresh token for a new pair. Each refresh token works once: presenting
    a spent one again revokes the whole session. Throttled per client address and per user."""
    await throttle.hit(rules.refresh_per_address, client)
    token_hash = hash_refresh_token(body.refresh_token)
    # The tenant is unknown until the token is found: the one cross-tenant read.
    async with db.transaction(bypass_rls=True) as session:
        owner = await store.refresh_token_owner(session, token_hash)
    if owner is None:
        raise InvalidRefreshToken()
    organization_id, user_id = owner
    await throttle.hit(rules.refresh_per_user, str(user_id))
    key = await keys.signing_key()
    async with db.transaction(organization_id=organization_id) as session:
        outcome = await store.rotate_refresh_token(session, settings, organization_id, token_hash)
    # Committed either way: a reuse must stay revoked although the caller is refused.
    if not isinstance(outcome, store.Rotated):
        raise InvalidRefreshToken()
    return _tokens(
        200, _token_body(settings, key, outcome.user, outcome.session_id, outcome.refresh_token)
    )


def _session_id(principal: Principal) -> uuid.UUID:
    try:
        return uuid.UUID(str(principal.session_id))
    except ValueError as exc:
        raise SessionEnded() from exc


@router.post("/logout", status_code=204, responses={401: _problem("unauthorized")})
async def logout(principal: CurrentPrincipal, db: DB) -> Response:
    """End the session of the presented access token (its refresh tokens stop working;
    the access token itself lapses at its ``exp``). Idempotent."""
    session_id = _session_id(principal)
    async with db.transaction(organization_id=principal.organization_id) as session:
        await store.revoke_session(
            session, principal.organization_id, session_id, principal.user_id, reason="logout"
        )
    return Response(status_code=204)


@router.get(
    "/me",
    response_model=User,
    responses={401: _problem("unauthorized", "session_revoked"), 404: _problem("not_found")},
)
async def me(principal: CurrentPrincipal, db: DB) -> User:
    """The signed-in user."""
    session_id = _session_id(principal)
    async with db.transaction(organization_id=principal.organization_id) as session:
        user = await store.get_user(session, principal.organization_id, principal.user_id)
        if user is None:
            raise NotFound("user not found")
        if not user.is_active or not await store.session_is_live(
            session, principal.organization_id, session_id, user.id
        ):
            raise SessionEnded()
    return _user(user)


@router.patch(
    "/me",
    response_model=User,
    responses={401: _problem("unauthorized", "session_revoked"), 422: _problem("invalid_input")},
)
async def update_me(body: UpdateMeRequest, principal: CurrentPrincipal, db: DB) -> User:
    """Change the signed-in user's own profile (``full_name``)."""
    session_id = _session_id(principal)
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        user = await _live_user(session, principal, session_id, for_update=True)
        if body.full_name != user.full_name:
            member = await directory.update_member(session, org, user.id, full_name=body.full_name)
            payload = UserUpdated(
                user_id=user.id,
                organization_id=org,
                full_name=member.full_name,
                role=member.role,
                is_active=member.is_active,
                changed=["full_name"],
            )
            await emit(session, payload, user.id, org)
            user = await _live_user(session, principal, session_id)
    return _user(user)


@router.post(
    "/me/password",
    response_model=TokenResponse,
    responses={
        401: _problem("unauthorized", "session_revoked"),
        422: _problem("invalid_current_password", "weak_password", "invalid_input"),
        429: _problem("rate_limited"),
    },
)
async def change_password(
    body: ChangePasswordRequest,
    principal: CurrentPrincipal,
    db: DB,
    settings: Config,
    keys: Keys,
    passwords: PasswordService,
    logins: LoginService,
    client: ClientAddress,
) -> Response:
    """Change the signed-in user's password.

    Every *other* session of the user ends (``session.revoked``, reason
    ``password_changed``); this one continues with fresh tokens, returned here
    (its earlier refresh token stops working).
    """
    session_id = _session_id(principal)
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        current = await _live_user(session, principal, session_id)
    # Guessing the current password with a stolen access token counts as failed logins.
    reserved = await logins.reserve_guess(current.email, client)
    if not await passwords.verify(current.password_hash, normalize_password(body.current_password)):
        raise InvalidCurrentPassword()  # counted before verifying
    await logins.refund(reserved)
    new_password = normalize_password(body.new_password)
    check_password_policy(new_password, current.email)
    new_hash = await passwords.hash(new_password)
    key = await keys.signing_key()
    async with db.transaction(organization_id=org) as session:
        user = await _live_user(session, principal, session_id, for_update=True)
        if user.password_hash != current.password_hash:
            raise InvalidCurrentPassword()  # changed concurrently: the check is stale
        await directory.update_member(session, org, user.id, password_hash=new_hash)
        await directory.revoke_other_sessions(session, org, user.id, keep=session_id)
        refresh_token = await directory.rotate_session_tokens(session, settings, user, session_id)
        if refresh_token is None:
            raise SessionEnded()
        answer = _token_body(settings, key, user, session_id, refresh_token)
    return _tokens(200, answer)


async def _live_user(
    session: AsyncSession, principal: Principal, session_id: uuid.UUID, *, for_update: bool = False
) -> store.User:
    user = await store.get_user(
        session, principal.organization_id, principal.user_id, for_update=for_update
    )
    if user is None:
        raise NotFound("user not found")
    if not user.is_active or not await store.session_is_live(
        session, principal.organization_id, session_id, user.id
    ):
        raise SessionEnded()
    return user
