"""Reads of the caller's organization right after sign-up.

auth answers ``POST /v1/auth/register`` with tokens naming an organization that
tenants creates from the ``user.registered`` event moments later (outbox relay,
broker, consumer: tens of milliseconds when all is well). A client that signs up
and reads its organization at once must get it, so the caller's own reads
(``/v1/organizations/me``, ``/me/usage``, ``/me/stats``, and ``PATCH /me``) retry
while the organization does not exist yet: a short poll, 50 ms doubling to
500 ms, for at most ``organization_wait_s``. No connection is held while waiting,
and only requests naming a missing organization poll. If it still does not exist,
the answer is 503 ``organization_pending`` with ``Retry-After``: the token is
auth's, so the organization exists or is about to; tenants has not caught up
(its consumer or the broker is behind or down).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.db import Database
from pytake_common.errors import ServiceUnavailable
from pytake_tenants.organizations import OrganizationNotFound

T = TypeVar("T")

FIRST_POLL_S = 0.05
LONGEST_POLL_S = 0.5
RETRY_AFTER_S = 5


class OrganizationPending(ServiceUnavailable):
    code, title = "organization_pending", "Organization not ready yet"


async def when_created(
    db: Database,
    org_id: uuid.UUID,
    read: Callable[[AsyncSession], Awaitable[T]],
    wait_s: float,
) -> T:
    """``read`` in ``org_id``'s transaction, retried while the organization is not there."""
    deadline = time.monotonic() + wait_s
    pause = FIRST_POLL_S
    while True:
        try:
            async with db.transaction(organization_id=org_id) as session:
                return await read(session)
        except OrganizationNotFound:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OrganizationPending(
                    f"organization {org_id} is not ready yet (it is created from the "
                    f"sign-up within seconds; waited {wait_s:g} s); retry shortly",
                    retry_after=RETRY_AFTER_S,
                ) from None
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, LONGEST_POLL_S)
