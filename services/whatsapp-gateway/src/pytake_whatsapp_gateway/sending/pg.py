"""The asyncpg connection under a SQLAlchemy session or connection, for the send path.

A send runs a dozen statements; through SQLAlchemy's execution machinery each costs
several times its round trip in CPU (a send was ~9 ms of the gateway's CPU, mostly
that). The hot statements are plain SQL run on the driver connection of the same
transaction: SQLAlchemy still begins, binds the tenant (row-level security), commits
and rolls back; asyncpg prepares each statement once per connection.
"""

from __future__ import annotations

from typing import cast

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


async def driver(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection of ``session``'s transaction (begun, tenant bound, if not yet)."""
    connection = await session.connection()
    return await connection_driver(connection)


async def connection_driver(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection of ``connection`` (no transaction begun)."""
    raw = await connection.get_raw_connection()
    return cast(asyncpg.Connection, raw.driver_connection)
