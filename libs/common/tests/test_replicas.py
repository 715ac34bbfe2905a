"""Revocations and organization policy reach every process through broadcast replicas."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter

from pytake_common.errors import PlanLimitExceeded
from pytake_common.events import CloudEvent
from pytake_common.replica import BroadcastReplica, ReplicaFeed
from pytake_common.revocation import RevocationList
from pytake_common.security import CurrentPrincipal
from pytake_common.tenancy import OrganizationDirectory
from pytake_common.web import create_service_app
from pytake_devstack.tokens import TokenFactory

from .plumbing import eventually, settings_for


def _event(etype: str, org: uuid.UUID, subject: uuid.UUID, **data) -> CloudEvent:
    return CloudEvent(
        source="pytake/test",
        type=etype,
        subject=str(subject),
        tenantid=str(org),
        data={"organization_id": str(org), **data},
    )


def test_revocation_by_session_and_by_user_cutoff():
    rl = RevocationList(settings_for("127.0.0.1:1", "t"))
    org, user, sid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    claims = {"sub": str(user), "sid": sid.hex, "iat": int(time.time()) - 5}
    assert not rl.is_revoked(claims)
    rl.apply(
        _event(
            "pytake.auth.session.revoked.v1",
            org,
            sid,
            session_id=str(sid),
            user_id=str(user),
            reason="logout",
        )
    )
    assert rl.is_revoked(claims)  # dashed and hex spellings of the id are the same session
    other = {"sub": str(user), "sid": uuid.uuid4().hex, "iat": int(time.time()) - 5}
    assert not rl.is_revoked(other)
    rl.apply(_event("pytake.auth.user.deactivated.v1", org, user, user_id=str(user)))
    assert rl.is_revoked(other)
    later = {"sub": str(user), "sid": uuid.uuid4().hex, "iat": int(time.time()) + 5}
    assert not rl.is_revoked(later)  # a token issued after the cutoff lives


async def test_directory_limits_and_suspension():
    d = OrganizationDirectory(settings_for("127.0.0.1:1", "t"))
    org = uuid.uuid4()
    assert d.limit(org, "contacts") is None
    await d.check_limit(org, "contacts", used=10**6)  # unknown organization: not limited
    d.apply(
        _event(
            "pytake.tenants.organization.plan_changed.v1",
            org,
            org,
            plan="starter",
            limits={"contacts": 2, "agents": None},
            trial_ends_at=None,
        )
    )
    await d.check_limit(org, "contacts", used=1)
    with pytest.raises(PlanLimitExceeded) as exc:
        await d.check_limit(org, "contacts", used=2)
    assert exc.value.extra == {"limit": "contacts", "allowed": 2, "used": 2}
    assert d.limit(org, "agents") is None
    d.apply(_event("pytake.tenants.organization.suspended.v1", org, org, reason="unpaid"))
    assert d.is_suspended(org)
    d.apply(_event("pytake.tenants.organization.reactivated.v1", org, org))
    assert not d.is_suspended(org)
    assert d.get(org).plan == "starter"


async def test_revoked_session_and_suspended_org_are_refused_within_two_seconds(kafka_bootstrap):
    """Published on the broker → every process refuses within 2 s (here: one app)."""
    settings = settings_for(kafka_bootstrap, "replica-test")
    router = APIRouter()

    @router.get("/v1/whoami")
    async def whoami(principal: CurrentPrincipal) -> dict[str, str]:
        return {"user": str(principal.user_id)}

    app = create_service_app(settings, title="t", routers=[router], db=None, check_broker=False)
    tokens = TokenFactory()
    tokens.install(app)
    org, user = uuid.uuid4(), uuid.uuid4()
    token = tokens.mint(organization_id=org, user_id=user, role="agent")
    claims_sid = __import__("jwt").decode(token, options={"verify_signature": False})["sid"]
    other_org = uuid.uuid4()
    other = tokens.mint(organization_id=other_org, role="agent")

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            hdr = {"Authorization": f"Bearer {token}"}
            assert (await c.get("/v1/whoami", headers=hdr)).status_code == 200
            # verified once and cached: revocation must still apply to the cached token
            assert app.state.verifier.cached(token) is not None
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            revoked = _event(
                "pytake.auth.session.revoked.v1",
                org,
                user,
                session_id=claims_sid,
                user_id=str(user),
                reason="logout",
            )
            suspended = _event(
                "pytake.tenants.organization.suspended.v1", other_org, other_org, reason="unpaid"
            )
            sent_at = asyncio.get_running_loop().time()
            for ev in (revoked, suspended):
                await producer.send_and_wait(ev.topic, ev.to_bytes(), key=ev.subject.encode())
            await producer.stop()

            async def refused(headers, status):
                r = await c.get("/v1/whoami", headers=headers)
                return r if r.status_code == status else None

            r = await eventually(lambda: refused(hdr, 401), timeout=10, interval=0.05)
            assert r.json()["code"] == "session_revoked"
            r = await eventually(
                lambda: refused({"Authorization": f"Bearer {other}"}, 403),
                timeout=10,
                interval=0.05,
            )
            assert r.json()["code"] == "organization_suspended"
            assert asyncio.get_running_loop().time() - sent_at < 2.0


def test_revocation_cutoff_from_explicit_time():
    rl = RevocationList(settings_for("127.0.0.1:1", "t"))
    org, user = uuid.uuid4(), uuid.uuid4()
    cutoff = datetime.now(UTC) - timedelta(minutes=1)
    rl.apply(
        _event(
            "pytake.auth.user.sessions_revoked.v1",
            org,
            user,
            user_id=str(user),
            reason="role_changed",
            revoked_before=cutoff.isoformat(),
        )
    )
    assert rl.is_revoked({"sub": str(user), "iat": int(cutoff.timestamp()) - 10})
    assert not rl.is_revoked({"sub": str(user), "iat": int(cutoff.timestamp()) + 10})


async def test_plan_change_reaches_a_running_directory_within_two_seconds(kafka_bootstrap):
    directory = OrganizationDirectory(settings_for(kafka_bootstrap, "replica-plan"))
    stop = asyncio.Event()
    task = asyncio.create_task(directory.run(stop))
    org = uuid.uuid4()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        changed = _event(
            "pytake.tenants.organization.plan_changed.v1",
            org,
            org,
            plan="starter",
            limits={"contacts": 1},
            trial_ends_at=None,
            changed_by=None,
        )
        sent_at = asyncio.get_running_loop().time()
        await producer.send_and_wait(changed.topic, changed.to_bytes(), key=org.bytes)
        await producer.stop()

        async def limited():
            return directory.limit(org, "contacts") == 1 or None

        await eventually(limited, timeout=10, interval=0.02)
        assert asyncio.get_running_loop().time() - sent_at < 2.0
        with pytest.raises(PlanLimitExceeded):
            await directory.check_limit(org, "contacts", used=1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_one_feed_carries_every_view_of_a_process(kafka_bootstrap):
    """Several views on one group-less consumer: each record reaches every view that
    follows its topic, once; a malformed record and a view's failing handler skip only
    themselves (on a topic of this test's own: other tests read the shared ones)."""
    settings = settings_for(kafka_bootstrap, "replica-feed")
    revocations, directory = RevocationList(settings), OrganizationDirectory(settings)
    own_topic = f"pytake.test.feed-{uuid.uuid4().hex}"
    seen: list[str] = []

    class Failing(BroadcastReplica):
        def handlers(self):
            def boom(event):
                seen.append(event.type)
                raise KeyError("boom")

            return {"pytake.test.boom.v1": boom}

    failing = Failing(settings, [own_topic], "failing")
    feed = ReplicaFeed(settings, [revocations, directory, failing])
    assert sorted(feed.by_topic) == sorted({*revocations.topics, *directory.topics, own_topic})
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    org, user, sid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        await producer.send_and_wait(own_topic, b"not an event", key=org.bytes)
        boom = _event("pytake.test.boom.v1", org, org)
        await producer.send_and_wait(own_topic, boom.to_bytes(), key=org.bytes)
        suspended = _event("pytake.tenants.organization.suspended.v1", org, org, reason="unpaid")
        revoked = _event(
            "pytake.auth.session.revoked.v1",
            org,
            sid,
            session_id=str(sid),
            user_id=str(user),
            reason="logout",
        )
        for ev in (suspended, revoked):
            await producer.send_and_wait(ev.topic, ev.to_bytes(), key=ev.subject.encode())
        await producer.stop()

        async def arrived():
            claims = {"sub": str(user), "sid": sid.hex, "iat": int(time.time()) - 5}
            done = directory.is_suspended(org) and revocations.is_revoked(claims) and seen
            return done or None

        await eventually(arrived, timeout=10, interval=0.02)
        assert seen == ["pytake.test.boom.v1"]  # once, after the malformed record; it failed
        assert failing.applied == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
