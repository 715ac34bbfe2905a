"""Chatbot flows (the flows helper fills this package: models, API under ``api/``, runtime).

The one entry point rules call is :func:`start_flow`. Until flows exist it refuses with
:class:`FlowsUnavailable` (a typed domain error, HTTP 501 if it ever reaches the API); a rule
run whose action hits it is recorded ``failed`` with that code. This is the only place
that raises it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from pytake_common.errors import DomainError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from pytake_automation.context import TriggerContext


class FlowsUnavailable(DomainError):
    status = 501
    code = "flows_unavailable"
    title = "Chatbot flows are not available yet"


async def start_flow(session: AsyncSession, ctx: TriggerContext, flow_id: uuid.UUID) -> None:
    """Start flow ``flow_id`` for ``ctx``'s conversation, in the caller's transaction.

    Contract for the flows module: idempotent per (``ctx.trigger_key``, flow) — a
    redelivered trigger must not start a second session — and any messages the flow sends
    go through :func:`pytake_automation.actions.request_actions` with kind ``"flow"``.
    """
    raise FlowsUnavailable(f"flow {flow_id} cannot start: flows are not implemented yet")
