"""From a conversation event to automation: the replica moves, then what it triggers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation import conversation_state as state
from pytake_common.events import CloudEvent


async def on_appended(session: AsyncSession, event: CloudEvent, d: state.Appended) -> None:
    await state.on_appended(session, d)


async def on_opened(session: AsyncSession, event: CloudEvent, d: state.Opened) -> None:
    await state.on_opened(session, d)


async def on_status(session: AsyncSession, event: CloudEvent, d: state.StatusMoved) -> None:
    await state.on_status(session, d)


async def on_assigned(session: AsyncSession, event: CloudEvent, d: state.Assigned) -> None:
    await state.on_assigned(session, d)
