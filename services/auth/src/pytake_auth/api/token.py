"""``POST /v1/auth/token``: the OAuth 2.0 client-credentials grant (RFC 6749 §4.4).

The client authenticates with HTTP Basic (``client_id:client_secret``, each
form-urlencoded, §2.3.1) or with ``client_id``/``client_secret`` in the form body, never
both. The answer is an access token signed like a user's (same keys, same JWKS) whose
subject is the client (``sub`` = ``client_id``), with the client's role, its scopes when
narrowed (or the ``scope`` asked for, within them) and ``sid`` = the secret's generation,
so rotating the secret or deleting the client revokes it everywhere.

Errors are RFC 6749 §5.2 JSON (``invalid_request``, ``invalid_client`` with 401 and
``WWW-Authenticate``, ``unsupported_grant_type``, ``invalid_scope``); every answer carries
``Cache-Control: no-store``. Requests are throttled per client address and per client
(429 problem+json with ``Retry-After``); every answer to a request that names an existing
client is audited (``api_client.token_issued`` / ``api_client.token_refused``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import State

from pytake_auth import audit, clients
from pytake_auth.api.deps import client_address
from pytake_auth.api.routes import NO_STORE
from pytake_auth.api.schemas import ClientTokenResponse, OAuthError
from pytake_auth.config import Settings
from pytake_auth.keys import KeyRing
from pytake_auth.throttle import Rule, Throttle
from pytake_auth.tokens import mint_client_token
from pytake_common.db import Database
from pytake_common.scopes import ROLE_CEILINGS, format_scope
from pytake_common.security import PrincipalKind

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/auth", tags=["auth"])

GRANT = "client_credentials"
FORM = "application/x-www-form-urlencoded"
MAX_BODY = 4096


@dataclass(frozen=True, slots=True)
class TokenRules:
    per_address: Rule
    per_client: Rule

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenRules:
        address, client = settings.throttle_token_per_address, settings.throttle_token_per_client
        return cls(
            per_address=Rule("token:address", *address),
            per_client=Rule("token:client", *client),
        )


class OAuthRefusal(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def _invalid_client(description: str = "client authentication failed") -> OAuthRefusal:
    return OAuthRefusal("invalid_client", description, 401)


def _answer(error: OAuthRefusal) -> JSONResponse:
    headers = dict(NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="pytake", charset="UTF-8"'
    body = OAuthError.model_validate({"error": error.error, "error_description": error.description})
    return JSONResponse(body.model_dump(exclude_none=True), error.status, headers=headers)


async def _form(request: Request) -> dict[str, str]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != FORM:
        raise OAuthRefusal("invalid_request", f"the body must be {FORM}")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise OAuthRefusal("invalid_request", "the body is too large")
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthRefusal("invalid_request", "the body is not a valid form") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthRefusal("invalid_request", f"{name} is repeated")
        if value:  # §3.1: a parameter without a value is treated as omitted
            form[name] = value
    return form


def _credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """(client_id, client_secret), from HTTP Basic or the form."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    in_form = "client_id" in form or "client_secret" in form
    if scheme.lower() == "basic":
        if in_form:
            raise OAuthRefusal("invalid_request", "use one client authentication method only")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise _invalid_client("malformed Basic credentials") from exc
        name, colon, secret = decoded.partition(":")
        if not colon:
            raise _invalid_client("malformed Basic credentials")
        return unquote_plus(name), unquote_plus(secret)
    if scheme:
        raise _invalid_client("authenticate with HTTP Basic or client_id/client_secret")
    if "client_id" not in form or "client_secret" not in form:
        raise _invalid_client("client_id and client_secret are required")
    return form["client_id"], form["client_secret"]


def _granted_scope(client: clients.Credentials, asked: str | None) -> str | None:
    """The token's ``scope`` claim: what was asked, within the client's scopes (or its
    role's); the client's own scopes when nothing was asked; None when not narrowed."""
    limit = (
        frozenset(client.scopes)
        if client.scopes is not None
        else ROLE_CEILINGS.get(client.role, frozenset())
    )
    if asked is None:
        return format_scope(client.scopes) if client.scopes is not None else None
    wanted = set(asked.split())
    if not wanted or not wanted <= limit:
        raise OAuthRefusal("invalid_scope", "the requested scope exceeds the client's")
    return format_scope(wanted)


@router.post(
    "/token",
    response_model=ClientTokenResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FORM: {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": [GRANT]},
                            "scope": {"type": "string"},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
    responses={
        400: {"model": OAuthError, "description": "RFC 6749 §5.2 error"},
        401: {"model": OAuthError, "description": "invalid_client"},
        429: {"description": "problem+json `rate_limited` with Retry-After"},
    },
)
async def token(request: Request) -> JSONResponse:
    """An access token for an API client (client credentials, RFC 6749 §4.4)."""
    state = request.app.state
    address = await client_address(request)
    try:
        form = await _form(request)
        grant = form.get("grant_type")
        if grant is None:
            raise OAuthRefusal("invalid_request", "grant_type is required")
        if grant != GRANT:
            raise OAuthRefusal("unsupported_grant_type", f"only {GRANT} is supported")
        client_id, secret = _credentials(request, form)
        throttle: Throttle = state.throttle
        rules: TokenRules = state.token_rules
        await throttle.hit(rules.per_address, address)
        try:
            wanted = uuid.UUID(client_id)
        except ValueError:
            raise _invalid_client() from None
        db: Database = state.db
        async with db.transaction(bypass_rls=True) as session:
            client = await clients.credentials(session, wanted)
        if client is None:
            log.info("token refused: unknown client", extra={"client_id": str(wanted)})
            raise _invalid_client()
        await throttle.hit(rules.per_client, str(client.id))
        return await _issue(state, client, secret, form.get("scope"), address)
    except OAuthRefusal as refusal:
        return _answer(refusal)


async def _issue(
    state: State, client: clients.Credentials, secret: str, asked: str | None, address: str
) -> JSONResponse:
    settings: Settings = state.settings
    db: Database = state.db
    keys: KeyRing = state.keys
    refusal: OAuthRefusal | None = None
    scope: str | None = None
    if client.deleted or not clients.secret_matches(secret, client.secret_hash):
        refusal = _invalid_client()
        reason = "deleted" if client.deleted else "wrong_secret"
    elif client.expires_at is not None and client.expires_at <= datetime.now(UTC):
        refusal, reason = _invalid_client("the client has expired"), "expired"
    else:
        try:
            scope = _granted_scope(client, asked)
        except OAuthRefusal as exc:
            refusal, reason = exc, "invalid_scope"
    actor: tuple[PrincipalKind, uuid.UUID] = ("api_client", client.id)
    org = client.organization_id
    if refusal is not None:
        async with db.transaction(organization_id=org) as session:
            await audit.record(
                session,
                organization_id=org,
                actor=actor,
                action="api_client.token_refused",
                target_id=client.id,
                source_address=address,
                detail={"reason": reason},
            )
        raise refusal
    key = await keys.signing_key()
    not_after = int(client.expires_at.timestamp()) if client.expires_at is not None else None
    access, lifetime = mint_client_token(
        key,
        settings,
        client_id=client.id,
        organization_id=org,
        role=client.role,
        secret_id=client.secret_id,
        scope=scope,
        not_after=not_after,
    )
    async with db.transaction(organization_id=org) as session:
        await clients.touch(session, org, client.id)
        await audit.record(
            session,
            organization_id=org,
            actor=actor,
            action="api_client.token_issued",
            target_id=client.id,
            source_address=address,
            detail={"scope": scope} if scope is not None else None,
        )
    body = ClientTokenResponse(access_token=access, expires_in=lifetime, scope=scope)
    return JSONResponse(body.model_dump(exclude_none=True), headers=NO_STORE)
