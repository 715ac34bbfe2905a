"""Auth's audit trail: who did what to which API client, from where (appended only).

Rows are written in the same transaction as the change they record, so a change is
never committed without its row (or the reverse). A refused token request is recorded
under the organization of the client it named; a request naming no known client has
no organization to be recorded under and is only logged.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pytake_auth.tables import audit_log
from pytake_common.context import request_id_var
from pytake_common.security import Principal, PrincipalKind


def actor_of(principal: Principal) -> tuple[PrincipalKind, uuid.UUID]:
    return principal.kind, principal.user_id


async def record(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    actor: tuple[PrincipalKind, uuid.UUID],
    action: str,
    target_id: uuid.UUID,
    source_address: str | None,
    target_type: str = "api_client",
    detail: dict[str, Any] | None = None,
) -> None:
    await session.execute(
        audit_log.insert().values(
            organization_id=organization_id,
            actor_type=actor[0],
            actor_id=actor[1],
            action=action,
            target_type=target_type,
            target_id=target_id,
            detail=detail,
            source_address=source_address,
            request_id=request_id_var.get(),
        )
    )
