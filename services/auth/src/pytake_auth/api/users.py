"""User administration of one organization (``org_admin`` and ``super_admin`` only).

Another organization's user is 404. Every change of membership (create,
activate, deactivate, delete, role) takes the organization's advisory lock so
the admin count and the plan limit are checked against settled numbers.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_auth import directory, store
from pytake_auth.api.routes import DB, PasswordService, RegistrationGuard, _problem
from pytake_auth.api.schemas import CreateUserRequest, UpdateUserRequest, UserDetail, UserPage
from pytake_auth.domain import (
    EmailTaken,
    LastAdmin,
    check_password_policy,
    check_role_management,
    normalize_email,
    normalize_password,
)
from pytake_auth.events import (
    UserActivated,
    UserCreated,
    UserDeactivated,
    UserDeleted,
    UserUpdated,
)
from pytake_common.errors import NotFound
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, idempotent
from pytake_common.outbox import emit
from pytake_common.security import Admin, Principal

router = APIRouter(prefix="/v1/users", tags=["users"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _problem("not_found")}


def _detail(member: directory.Member) -> UserDetail:
    return UserDetail(
        id=member.id,
        email=member.email,
        full_name=member.full_name,
        role=member.role,
        organization_id=member.organization_id,
        is_active=member.is_active,
        last_login_at=member.last_login_at,
        created_at=member.created_at,
        updated_at=member.updated_at,
    )


async def _member(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID
) -> directory.Member:
    member = await directory.get_member(
        session, principal.organization_id, user_id, for_update=True
    )
    if member is None:
        raise NotFound("user not found")
    return member


async def _check_seat(request: Request, session: AsyncSession, org: uuid.UUID) -> None:
    """The plan's ``agents`` limit counts active users (checked before adding one)."""
    organizations = getattr(request.app.state, "organizations", None)
    if organizations is None:  # the organization directory is not wired in this process
        return
    used = await directory.count_active(session, org)
    await organizations.check_limit(org, "agents", used=used)


async def _keep_an_admin(session: AsyncSession, member: directory.Member) -> None:
    """Refuse to remove the organization's last active administrator."""
    if not member.is_active or member.role not in directory.ADMIN_ROLES:
        return
    if await directory.count_active_admins(session, member.organization_id) <= 1:
        raise LastAdmin()


def _updated(member: directory.Member, changed: list[str]) -> UserUpdated:
    return UserUpdated(
        user_id=member.id,
        organization_id=member.organization_id,
        full_name=member.full_name,
        role=member.role,
        is_active=member.is_active,
        changed=changed,
    )


@router.get("", response_model=UserPage)
async def list_users(
    principal: Admin,
    db: DB,
    role: Literal["super_admin", "org_admin", "agent", "viewer"] | None = None,
    is_active: bool | None = None,
    q: Annotated[str | None, Query(max_length=200, description="part of email or name")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> UserPage:
    """The organization's users, oldest first, ``limit`` at a time."""
    async with db.transaction(organization_id=principal.organization_id) as session:
        members, following = await directory.list_members(
            session,
            principal.organization_id,
            role=role,
            is_active=is_active,
            q=q,
            cursor=cursor,
            limit=limit,
        )
    return UserPage(items=[_detail(m) for m in members], next_cursor=following)


@router.post(
    "",
    status_code=201,
    response_model=UserDetail,
    responses={
        402: _problem("plan_limit_exceeded"),
        403: _problem("forbidden", "role_not_allowed"),
        409: _problem("email_taken"),
        422: _problem("weak_password", "invalid_input"),
    },
)
async def create_user(
    body: CreateUserRequest,
    principal: Admin,
    request: Request,
    db: DB,
    passwords: PasswordService,
    registrations: RegistrationGuard,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Add a user to the caller's organization with an initial password."""
    check_role_management(principal.role, None, body.role)
    org = principal.organization_id
    email = normalize_email(body.email)
    password = normalize_password(body.password)
    check_password_policy(password, email)
    # An HMAC, not a bare hash: the body holds a password.
    fingerprint = registrations.fingerprint(
        {"email": email, "password": password, "full_name": body.full_name, "role": body.role},
        path="/v1/users",
    )
    password_hash = await passwords.hash(password)
    user_id = uuid.uuid4()
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fingerprint)

        async def add() -> UserDetail:
            await directory.lock_organization(session, org)
            await _check_seat(request, session, org)
            created = await store.insert_user(
                session,
                user_id=user_id,
                organization_id=org,
                email=email,
                password_hash=password_hash,
                full_name=body.full_name,
                role=body.role,
            )
            if not created:
                raise EmailTaken("an account with this email already exists")
            member = await directory.get_member(session, org, user_id)
            assert member is not None
            payload = UserCreated(
                user_id=user_id,
                organization_id=org,
                email=email,
                full_name=member.full_name,
                role=member.role,
                is_active=member.is_active,
            )
            await emit(session, payload, user_id, org)
            return _detail(member)

        answer = await idempotent(guard, 201, add)
    return answer.response()


@router.get("/{user_id}", response_model=UserDetail, responses=NOT_FOUND)
async def get_user(user_id: uuid.UUID, principal: Admin, db: DB) -> UserDetail:
    async with db.transaction(organization_id=principal.organization_id) as session:
        member = await directory.get_member(session, principal.organization_id, user_id)
    if member is None:
        raise NotFound("user not found")
    return _detail(member)


@router.patch(
    "/{user_id}",
    response_model=UserDetail,
    responses={
        **NOT_FOUND,
        403: _problem("forbidden", "role_not_allowed"),
        409: _problem("last_admin"),
    },
)
async def update_user(
    user_id: uuid.UUID, body: UpdateUserRequest, principal: Admin, db: DB
) -> UserDetail:
    """Change a user's ``full_name`` and/or ``role``. A new role ends all their sessions
    (their tokens carry the old one)."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await directory.lock_organization(session, org)
        member = await _member(session, principal, user_id)
        check_role_management(principal.role, member.role, body.role)
        values: dict[str, Any] = {}
        if body.full_name is not None and body.full_name != member.full_name:
            values["full_name"] = body.full_name
        if body.role is not None and body.role != member.role:
            if body.role not in directory.ADMIN_ROLES:
                await _keep_an_admin(session, member)
            values["role"] = body.role
        if not values:
            return _detail(member)
        member = await directory.update_member(session, org, user_id, **values)
        await emit(session, _updated(member, sorted(values)), user_id, org)
        if "role" in values:
            await directory.revoke_all_sessions(session, org, user_id, reason="role_changed")
    return _detail(member)


@router.delete("/{user_id}", status_code=204, responses={**NOT_FOUND, 409: _problem("last_admin")})
async def delete_user(user_id: uuid.UUID, principal: Admin, db: DB) -> Response:
    """Remove a user: they can never sign in again, their e-mail is anonymised (and
    free for a new account), their id stays known to history."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await directory.lock_organization(session, org)
        member = await _member(session, principal, user_id)
        check_role_management(principal.role, member.role, None)
        await _keep_an_admin(session, member)
        await directory.mark_deleted(session, org, user_id)
        await emit(session, UserDeleted(user_id=user_id, organization_id=org), user_id, org)
        await directory.revoke_all_sessions(session, org, user_id, reason="deleted")
    return Response(status_code=204)


@router.post(
    "/{user_id}/activate",
    response_model=UserDetail,
    responses={**NOT_FOUND, 402: _problem("plan_limit_exceeded")},
)
async def activate_user(
    user_id: uuid.UUID, principal: Admin, request: Request, db: DB
) -> UserDetail:
    """Let a deactivated user sign in again (counts against the plan's ``agents``)."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await directory.lock_organization(session, org)
        member = await _member(session, principal, user_id)
        check_role_management(principal.role, member.role, None)
        if member.is_active:
            return _detail(member)
        await _check_seat(request, session, org)
        member = await directory.update_member(session, org, user_id, is_active=True)
        await emit(session, UserActivated(user_id=user_id, organization_id=org), user_id, org)
    return _detail(member)


@router.post(
    "/{user_id}/deactivate",
    response_model=UserDetail,
    responses={**NOT_FOUND, 409: _problem("last_admin")},
)
async def deactivate_user(user_id: uuid.UUID, principal: Admin, db: DB) -> UserDetail:
    """Stop a user from signing in; every session of theirs ends now."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await directory.lock_organization(session, org)
        member = await _member(session, principal, user_id)
        check_role_management(principal.role, member.role, None)
        if not member.is_active:
            return _detail(member)
        await _keep_an_admin(session, member)
        member = await directory.update_member(session, org, user_id, is_active=False)
        await emit(session, UserDeactivated(user_id=user_id, organization_id=org), user_id, org)
        await directory.revoke_all_sessions(session, org, user_id, reason="deactivated")
    return _detail(member)
