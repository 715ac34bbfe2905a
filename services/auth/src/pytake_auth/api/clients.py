"""``/v1/api-clients``: an organization's machine credentials (org_admin / super_admin).

Only people manage API clients: a client's own token is refused here (403), so a leaked
secret cannot mint further credentials. Another organization's client is 404. The secret
is in the answer to the create and rotate calls only. Every change is audited.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from pytake_auth import audit, clients
from pytake_auth.api.deps import ClientAddress
from pytake_auth.api.routes import DB, RegistrationGuard, _problem
from pytake_auth.api.schemas import (
    ApiClient,
    ApiClientPage,
    ApiClientWithSecret,
    CreateApiClientRequest,
)
from pytake_auth.domain import check_client_grant
from pytake_common.errors import Forbidden, InvalidInput, NotFound
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, idempotent
from pytake_common.security import ADMINS, CurrentPrincipal, Principal, admit

router = APIRouter(prefix="/v1/api-clients", tags=["api clients"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _problem("not_found")}


async def _administrator(principal: CurrentPrincipal) -> Principal:
    admit(principal, ADMINS)
    if principal.is_client:
        raise Forbidden("API clients are managed by people, not by API clients")
    return principal


Administrator = Annotated[Principal, Depends(_administrator)]


def _view(client: clients.ApiClient) -> dict[str, Any]:
    return {
        "id": client.id,
        "client_id": client.id,
        "name": client.name,
        "role": client.role,
        "scopes": client.scopes,
        "expires_at": client.expires_at,
        "created_by": client.created_by,
        "created_at": client.created_at,
        "secret_rotated_at": client.secret_rotated_at,
        "last_used_at": client.last_used_at,
    }


@router.get("", response_model=ApiClientPage)
async def list_clients(
    principal: Administrator,
    db: DB,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ApiClientPage:
    """The organization's API clients, oldest first (never their secrets)."""
    async with db.transaction(organization_id=principal.organization_id) as session:
        items, following = await clients.page(session, principal.organization_id, cursor, limit)
    return ApiClientPage(
        items=[ApiClient.model_validate(_view(c)) for c in items], next_cursor=following
    )


@router.post(
    "",
    status_code=201,
    response_model=ApiClientWithSecret,
    responses={
        403: _problem("forbidden", "role_not_allowed"),
        422: _problem("invalid_scope", "invalid_input"),
    },
)
async def create_client(
    body: CreateApiClientRequest,
    principal: Administrator,
    db: DB,
    registrations: RegistrationGuard,
    address: ClientAddress,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A new client and its secret, shown in this answer only (a retry with the same
    ``Idempotency-Key`` replays it; the stored answer is encrypted)."""
    scopes = sorted(set(body.scopes)) if body.scopes is not None else None
    check_client_grant(body.role, scopes)
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise InvalidInput("expires_at must be in the future")
    org = principal.organization_id
    fingerprint = registrations.fingerprint(body.model_dump(mode="json"), path="/v1/api-clients")
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(
            session, org, principal.user_id, idempotency_key, fingerprint, box=registrations
        )

        async def create() -> dict[str, Any]:
            secret, secret_hash = clients.new_secret()
            client = await clients.insert(
                session,
                client_id=uuid.uuid4(),
                organization_id=org,
                name=body.name,
                role=body.role,
                scopes=scopes,
                expires_at=body.expires_at,
                created_by=principal.user_id,
                secret_hash=secret_hash,
            )
            await audit.record(
                session,
                organization_id=org,
                actor=audit.actor_of(principal),
                action="api_client.created",
                target_id=client.id,
                source_address=address,
                detail={"name": client.name, "role": client.role, "scopes": client.scopes},
            )
            answer = ApiClientWithSecret.model_validate({**_view(client), "client_secret": secret})
            return answer.model_dump(mode="json")

        answer = await idempotent(guard, 201, create)
    return answer.response({"Cache-Control": "no-store"})


@router.delete("/{client_id}", status_code=204, responses=NOT_FOUND)
async def delete_client(
    client_id: uuid.UUID, principal: Administrator, db: DB, address: ClientAddress
) -> Response:
    """Remove a client: its secret stops working now, its tokens within about a second."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        if not await clients.delete(session, org, client_id):
            raise NotFound("API client not found")
        await audit.record(
            session,
            organization_id=org,
            actor=audit.actor_of(principal),
            action="api_client.deleted",
            target_id=client_id,
            source_address=address,
        )
    return Response(status_code=204)


@router.post("/{client_id}/rotate-secret", response_model=ApiClientWithSecret, responses=NOT_FOUND)
async def rotate_secret(
    client_id: uuid.UUID, principal: Administrator, db: DB, address: ClientAddress
) -> Response:
    """A new secret, shown in this answer only; the old one stops working now and the
    tokens it obtained within about a second."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        rotated = await clients.rotate_secret(session, org, client_id)
        if rotated is None:
            raise NotFound("API client not found")
        client, secret = rotated
        await audit.record(
            session,
            organization_id=org,
            actor=audit.actor_of(principal),
            action="api_client.secret_rotated",
            target_id=client_id,
            source_address=address,
        )
    answer = ApiClientWithSecret.model_validate({**_view(client), "client_secret": secret})
    return Response(
        answer.model_dump_json(),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
