"""``python -m pytake_auth create-super-admin``: the platform's first operator.

The password comes from ``PYTAKE_BOOTSTRAP_PASSWORD`` or standard input, never
from the command line (argv is visible to every user of the machine). Running
it again with the same e-mail changes nothing. The operators' organization is
the one existing super_admins belong to; the first run creates it by emitting
``user.registered`` (tenants creates organizations from that event).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from sqlalchemy import func, select

from pytake_auth import store
from pytake_auth.config import Settings
from pytake_auth.domain import check_password_policy, normalize_email, normalize_password
from pytake_auth.events import UserCreated, UserRegistered
from pytake_auth.passwords import Passwords
from pytake_auth.tables import users
from pytake_common.db import Database
from pytake_common.errors import DomainError
from pytake_common.outbox import emit

COMMAND = "create-super-admin"
PASSWORD_ENV = "PYTAKE_BOOTSTRAP_PASSWORD"
PLATFORM_ORGANIZATION_NAME = "PyTake Platform"
LOCK_KEY = zlib.crc32(b"pytake-auth-bootstrap")


class BootstrapError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Outcome:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    created: bool
    organization_created: bool


async def create_super_admin(
    settings: Settings, *, email: str, full_name: str, password: str
) -> Outcome:
    email = normalize_email(email)
    password = normalize_password(password)
    full_name = full_name.strip()
    if not full_name or len(full_name) > 200:
        raise BootstrapError("--full-name must be 1 to 200 characters")
    try:
        check_password_policy(password, email)
    except DomainError as exc:
        raise BootstrapError(exc.detail) from exc
    db = Database(settings.service_database_url(), app_role=settings.db_app_role, pool_size=1)
    try:
        password_hash = await Passwords(settings).hash(password)
        # Platform path: looks across organizations for the e-mail and the operators.
        async with db.transaction(bypass_rls=True) as session:
            await session.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
            existing = await store.find_user_by_email(session, email)
            if existing is not None:
                if existing.role != "super_admin":
                    raise BootstrapError(f"{email} already belongs to a {existing.role}")
                return Outcome(existing.id, existing.organization_id, False, False)
            platform = await session.scalar(
                select(users.c.organization_id)
                .where(users.c.role == "super_admin", users.c.deleted_at.is_(None))
                .order_by(users.c.created_at)
                .limit(1)
            )
            organization_id = platform or uuid.uuid4()
            user_id = uuid.uuid4()
            await store.insert_user(
                session,
                user_id=user_id,
                organization_id=organization_id,
                email=email,
                password_hash=password_hash,
                full_name=full_name,
                role="super_admin",
            )
            if platform is None:
                event: UserRegistered | UserCreated = UserRegistered(
                    user_id=user_id,
                    organization_id=organization_id,
                    email=email,
                    full_name=full_name,
                    role="super_admin",
                    organization_name=PLATFORM_ORGANIZATION_NAME,
                )
            else:
                event = UserCreated(
                    user_id=user_id,
                    organization_id=organization_id,
                    email=email,
                    full_name=full_name,
                    role="super_admin",
                    is_active=True,
                )
            await emit(session, event, user_id, organization_id)
        return Outcome(user_id, organization_id, True, platform is None)
    finally:
        await db.dispose()


def read_password(stdin: TextIO) -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    if stdin.isatty():
        return getpass.getpass("super_admin password: ")
    return stdin.readline().rstrip("\r\n")


def main(argv: Sequence[str], stdin: TextIO = sys.stdin) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m pytake_auth {COMMAND}",
        description=f"Create the platform operator (password from ${PASSWORD_ENV} or stdin).",
    )
    parser.add_argument("--email", required=True)
    parser.add_argument("--full-name", required=True)
    args = parser.parse_args(argv)
    password = read_password(stdin)
    try:
        outcome = asyncio.run(
            create_super_admin(
                Settings(), email=args.email, full_name=args.full_name, password=password
            )
        )
    except BootstrapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    state = "created" if outcome.created else "already exists"
    print(f"super_admin {outcome.user_id} {state} (organization {outcome.organization_id})")
    return 0
