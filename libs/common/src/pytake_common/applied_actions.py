"""Applying requested actions at most once each: claim by id, apply in a savepoint, record.

The mechanics of consumers that carry out another service's requests (conversations and
contacts applying automation's ``actions_requested``): each service keeps its own ledger
table (``action_id`` primary key, ``outcome``, ``detail`` and whatever else it records) and
its own appliers; this module claims an id in the caller's (inbox) transaction with
``ON CONFLICT DO NOTHING``, runs the applier in a savepoint, and stores what came of it. A
request redelivered, or republished under another event id, finds its ids claimed and does
nothing; an action that cannot apply (a typed ``DomainError``, or a malformed action) is
recorded with its problem code and does not stop the next one.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import Table, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import DomainError

#: what an applier answers when it applied (``applied``) or found nothing to change
Apply = Callable[[], Awaitable[str]]


async def apply_once(
    session: AsyncSession,
    ledger: Table,
    action_id: uuid.UUID,
    values: Mapping[str, Any],
    apply: Apply,
) -> str | None:
    """Apply the action ``action_id`` unless it was before; its outcome (None: it was)."""
    claimed = await session.scalar(
        pg_insert(ledger)
        .values(action_id=action_id, outcome="claimed", **values)
        .on_conflict_do_nothing()
        .returning(ledger.c.action_id)
    )
    if claimed is None:
        return None
    detail: str | None = None
    try:
        async with session.begin_nested():
            outcome = await apply()
    except DomainError as exc:
        outcome, detail = exc.code, exc.detail[:500]
    except (KeyError, ValueError, TypeError) as exc:
        outcome, detail = "invalid_action", repr(exc)[:500]
    await session.execute(
        update(ledger).where(ledger.c.action_id == action_id).values(outcome=outcome, detail=detail)
    )
    return outcome
