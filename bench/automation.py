"""Automation's cost and speed: CPU per inbound message with 50 rules vs none, and the
automatic reply's latency to the simulator's Graph API.

Part 1 (in process, real PostgreSQL): an automation app without workers; N inbound
``message.appended`` events go through the real idempotent consumer (inbox mark, replica,
situation read, automatic messages, rules, timers, outbox), first with no rules, then with 50
active rules (keyword, tag, attribute, hours, status conditions; one in five acts). Prints
this process's CPU per message and PostgreSQL's (its server only), each net of nothing
(the loop is busy throughout). ``--flows 5``: the organization also has 5 published flows
(``pytake_devstack.flow_sample``'s triage flow, its first question allowing 10 attempts) and
one conversation in five has an active session of one of them, so one message in five is
an answer that flow takes (a reprompt: session read and lock, step, ``actions_requested``,
session saved) instead of going to automatic messages and rules.

Part 2 (``--latency K``, the whole platform as processes): an organization closed today (a
holiday) with an away message; K customers write once each, 0.2-0.6 s after the previous
away message (an idle platform); for each, the time from the webhook's acknowledgement
(the simulator's post of it answered) to the simulator accepting the away message's Graph
API call (its record of the call; one clock). Then that time split along the path, from
timestamps taken on the way: each event's ``time`` (built by its consumer's handler), its
Kafka record's timestamp (produced by the service's outbox relay; read by an observer
consumer) and whatsapp-gateway's ``send_log.created_at`` (the send claimed by its
dispatcher). ``--idle S``: then each process's CPU over S seconds of nothing happening
(the consumers' fetch polling, the relays' and workers' fallback polls).

``--campaign K`` (with ``--flows``): then, in the organization with 50 rules and the
flows, K campaign sends as automation's topics carry them (the conversation opened by the
campaign, its template message, the message's three statuses), ``--batch`` records at a
time: automation's and PostgreSQL's CPU per send.

``--batch K``: part 1 hands the consumer K records at a time (``process_batch``: one
transaction, the inbox marks in one statement), as it gets them while messages stream in;
the default, 1, is a transaction per record (an idle platform).

Usage: python bench/automation.py [--n 500] [--latency 20] [--flows 5] [--batch 20] [--idle 10]
                                  [--campaign 500]
(``--n 0``: part 2 alone)
The box is shared and noisy: compare runs by the calibration line printed first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka.structs import ConsumerRecord
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))

from _measure import TopicObserver, box, idle_cpu, infrastructure, pct, platform, postgres_cpu

from pytake_automation.actions import Target
from pytake_automation.app import create_app
from pytake_automation.config import Settings
from pytake_automation.flows import catalog
from pytake_automation.flows import sessions as flow_sessions
from pytake_automation.flows.session import Facts
from pytake_automation.flows.tables import flow_sessions as flow_sessions_table
from pytake_automation.rule_model import RuleBody
from pytake_automation.rules import create as create_rule
from pytake_common.consumer import EventConsumer
from pytake_common.events import CloudEvent
from pytake_common.migrations import upgrade
from pytake_common.pgtenant import asyncpg_dsn, to_asyncpg_url
from pytake_devstack.flow_sample import triage_flow
from pytake_devstack.mainloop import MainLoop, poll

MIGRATIONS = Path(__file__).parents[1] / "services/automation/src/pytake_automation/migrations"


def appended(org: uuid.UUID, conv: uuid.UUID, contact: uuid.UUID, text: str) -> CloudEvent:
    message = uuid.uuid4()
    return CloudEvent(
        source="pytake/conversations",
        type="pytake.conversations.message.appended.v1",
        subject=str(message),
        tenantid=str(org),
        data={
            "organization_id": str(org),
            "message_id": str(message),
            "conversation_id": str(conv),
            "contact_id": str(contact),
            "direction": "inbound",
            "type": "text",
            "text": text,
            "created_at": datetime.now(UTC).isoformat(),
        },
    )


def campaign_send(org: uuid.UUID, campaign: uuid.UUID) -> list[CloudEvent]:
    """What automation's topics carry for one campaign send to a new conversation: the
    conversation opened by the campaign, its template message, and the message's three
    statuses (sent, delivered, read)."""
    conv, contact, message = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC).isoformat()
    base = {"organization_id": str(org), "conversation_id": str(conv), "contact_id": str(contact)}

    def event(etype: str, subject: uuid.UUID, data: dict[str, Any]) -> CloudEvent:
        return CloudEvent(
            source="pytake/conversations",
            type=f"pytake.conversations.{etype}.v1",
            subject=str(subject),
            tenantid=str(org),
            data={**base, **data},
        )

    return [
        event(
            "conversation.opened",
            conv,
            {"number_id": str(uuid.uuid4()), "opened_at": now, "started_by": str(campaign)},
        ),
        event(
            "message.appended",
            message,
            {
                "message_id": str(message),
                "direction": "outbound",
                "type": "template",
                "text": "Oferta de dezembro",
                "created_at": now,
                "sender_type": "campaign",
                "sender_id": str(campaign),
            },
        ),
        *(
            event(
                "message.status_changed",
                message,
                {"message_id": str(message), "status": status, "at": now},
            )
            for status in ("sent", "delivered", "read")
        ),
    ]


def fifty_rules() -> list[RuleBody]:
    """Fifty rules of the kinds organizations write (keywords, tags, attributes, hours, status)."""
    out = []
    for i in range(50):
        kind = i % 5
        conditions: list[dict[str, Any]] = [
            [{"type": "text_contains", "words": [f"produto {i}", f"pedido numero {i}"]}],
            [{"type": "contact_tag", "tag_id": str(uuid.uuid4())}],
            [{"type": "contact_attribute", "key": "plan", "value": f"plan{i}"}],
            [{"type": "business_hours", "state": "closed"}, {"type": "first_message"}],
            [{"type": "conversation_status", "any_of": ["pending"]}],
        ][kind]
        out.append(
            RuleBody(
                name=f"rule {i}",
                position=i,
                trigger={"type": "message_received"},
                conditions=conditions,
                actions=[{"type": "add_note", "text": f"rule {i}"}],
            )
        )
    return out


async def publish_flows(session: Any, org: uuid.UUID, count: int) -> list[uuid.UUID]:
    """``count`` published flows (the sample triage flow, 10 attempts at its first question)."""
    ids = []
    for i in range(count):
        definition = triage_flow(str(uuid.uuid4()), prompt=f"Flow {i}: what is it about?")
        definition["nodes"][0]["max_attempts"] = 10
        body = catalog.FlowCreate.model_validate({"name": f"flow {i}", "definition": definition})
        flow = await catalog.create(session, org, None, body)
        await catalog.publish(session, org, None, flow.id)
        ids.append(flow.id)
    return ids


async def cpu_per_message(
    pg_url: str, postmaster: Any, n: int, flows: int, batch: int = 1, campaign: int = 0
) -> None:
    url = to_asyncpg_url(pg_url, database=f"bench_automation_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, MIGRATIONS, url, "pytake_app")
    settings = Settings(
        own_database_url=url,
        kafka_bootstrap="127.0.0.1:9",
        run_workers=False,
        env="test",
        actions_per_conversation_per_minute=1000,
        log_level="WARNING",
    )
    app = create_app(settings)
    consumer = EventConsumer(settings, app.state.db, "automation", app.state.handlers)
    # one message in three matches one rule (rule 5's phrase); the others match none
    texts = ["oi, quero a segunda via do boleto", "meu pedido número 5 atrasou", "bom dia"]
    try:
        variants: list[tuple[str, list[RuleBody], int]] = [
            ("no rules", [], 0),
            ("50 rules", fifty_rules(), 0),
        ]
        if flows:
            variants += [
                (f"{flows} flows", [], flows),
                (f"50 rules + {flows} flows", fifty_rules(), flows),
            ]
        for label, rules, flow_count in variants:
            org = uuid.uuid4()
            convs = [(uuid.uuid4(), uuid.uuid4()) for _ in range(50)]
            async with app.state.db.transaction(organization_id=org) as session:
                for body in rules:
                    await create_rule(session, org, None, body)
                flow_ids = await publish_flows(session, org, flow_count)
                # one conversation in five is in a flow (its sessions spread over the flows)
                for i, flow_id in enumerate(flow_ids * (10 // max(flow_count, 1))):
                    conv, contact = convs[5 * i]
                    target = Target(org, conv, contact, None)
                    await flow_sessions.start(session, target, flow_id, "bench", Facts())
            events = [appended(org, *convs[i % 50], texts[i % 3]) for i in range(n)]
            await _process(consumer, events[:20])  # warm: caches, statements
            pg0, cpu0, t0 = postgres_cpu(postmaster), time.process_time(), time.perf_counter()
            await _process(consumer, events[20:], batch)
            pg1, cpu1, t1 = postgres_cpu(postmaster), time.process_time(), time.perf_counter()
            m = n - 20
            print(
                f"{label:>22}: automation {1000 * (cpu1 - cpu0) / m:.2f} ms CPU/message, "
                f"postgres {1000 * (pg1 - pg0) / m:.2f} ms, wall {1000 * (t1 - t0) / m:.2f} ms"
            )
            if flow_count:
                async with app.state.db.transaction(organization_id=org) as session:
                    active = await session.scalar(
                        select(func.count()).where(
                            flow_sessions_table.c.organization_id == org,
                            flow_sessions_table.c.status == "active",
                        )
                    )
                print(
                    f"{'':>24}flow sessions: 10 started, {active} still active "
                    "(the others ended at their 10th answer)"
                )
            if campaign and rules and flow_count:
                await campaign_sends(consumer, postmaster, org, campaign, batch)
    finally:
        await consumer.close()
        await app.state.db.dispose()


async def campaign_sends(
    consumer: EventConsumer, postmaster: Any, org: uuid.UUID, n: int, batch: int
) -> None:
    """``n`` campaign sends (:func:`campaign_send`'s five records each) handed to the
    consumer ``batch`` records at a time: automation's CPU and PostgreSQL's per send."""
    sent = uuid.uuid4()
    warm = [ev for _ in range(4) for ev in campaign_send(org, sent)]
    await _process(consumer, warm, batch)
    events = [ev for _ in range(n) for ev in campaign_send(org, sent)]
    pg0, cpu0, t0 = postgres_cpu(postmaster), time.process_time(), time.perf_counter()
    await _process(consumer, events, batch)
    pg1, cpu1, t1 = postgres_cpu(postmaster), time.process_time(), time.perf_counter()
    print(
        f"{'campaign sends':>22}: automation {1000 * (cpu1 - cpu0) / n:.2f} ms CPU/send, "
        f"postgres {1000 * (pg1 - pg0) / n:.2f} ms, wall {1000 * (t1 - t0) / n:.2f} ms "
        f"({n} sends: opened, template appended, 3 statuses each; batches of {batch} records)"
    )


def matching_only(n: int) -> None:
    """The in-memory part alone: the compiled 50-rule set against sample contexts."""
    from pytake_automation.context import ContactView, ConversationView, TriggerContext
    from pytake_automation.matching import RuleSet, select_rules

    org = uuid.uuid4()
    rows = [{**b.model_dump(mode="json"), "id": uuid.uuid4()} for b in fifty_rules()]
    rules = RuleSet.of(1, rows).by_trigger["message_received"]
    texts = ["oi, quero a segunda via do boleto", "meu pedido número 5 atrasou", "bom dia"]
    conv = ConversationView(
        uuid.uuid4(), org, uuid.uuid4(), None, "open", "normal", None, None, 2, False
    )
    contexts = [
        TriggerContext(
            "message_received",
            str(i),
            datetime.now(UTC),
            conv,
            ContactView(conv.contact_id, attributes={"plan": "gold"}),
            True,
            texts[i % 3],
        )
        for i in range(n)
    ]
    started = time.process_time()
    matched = sum(len(select_rules(rules, c)) for c in contexts)
    spent = time.process_time() - started
    print(
        f"matching alone, 50 rules: {1e6 * spent / n:.1f} µs CPU/message "
        f"({matched} matches over {n})"
    )


async def _process(consumer: EventConsumer, events: list[CloudEvent], batch: int = 1) -> None:
    """The events as the consumer gets them: one record per transaction (``batch`` 1, an
    idle platform's case), or ``batch`` records at a time (``process_batch``: one
    transaction, the inbox marks in one statement, as when records stream in)."""
    records = []
    for offset, ev in enumerate(events):
        value = ev.to_bytes()
        records.append(
            ConsumerRecord(
                ev.topic, 0, offset, 0, 0, ev.subject.encode(), value, None, 0, len(value), []
            )
        )
    # as the consumer's run loop hands them over (inside ``holding()`` when the kit has it:
    # its pool connection kept between transactions)
    holding = getattr(consumer, "holding", None)
    async with holding() if holding is not None else contextlib.nullcontext():
        for start in range(0, len(records), batch):
            await consumer.process_batch(records[start : start + batch])


#: The records of the away message's path, in order: (topic, event type, what the hop
#: ending at the event's ``time`` is called, what the hop ending at its produce is called).
#: An event's ``time`` is when its handler built it (in the consumer's transaction); the
#: record's timestamp is when the service's outbox relay produced it.
PATH = [
    (
        "pytake.whatsapp.message",
        "pytake.whatsapp.message.received.v1",
        None,
        "ack → whatsapp-gateway's relay produces received",
    ),
    (
        "pytake.conversations.message",
        "pytake.conversations.message.appended.v1",
        "→ conversations consumes it (appended built)",
        "→ conversations' relay produces appended",
    ),
    (
        "pytake.automation.session",
        "pytake.automation.session.actions_requested.v1",
        "→ automation consumes it (actions_requested built)",
        "→ automation's relay produces actions_requested",
    ),
    (
        "pytake.conversations.message",
        "pytake.conversations.message.send_requested.v1",
        "→ conversations consumes it (send_requested built)",
        "→ conversations' relay produces send_requested",
    ),
]


class PathObserver(TopicObserver):
    """Reads the path's topics (no group, from their end) and keeps, per record, its
    event type, direction, event time and produce time, to split each away message's
    latency into hops afterwards by time window (customers write one at a time)."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, sorted({topic for topic, *_ in PATH}))
        #: (produced, event type, direction, event time), both times in epoch seconds
        self.seen_events: list[tuple[float, str, str | None, float]] = []

    def seen(self, record: ConsumerRecord[bytes, bytes]) -> None:
        event = json.loads(record.value)
        self.seen_events.append(
            (
                record.timestamp / 1000,
                event["type"],
                event["data"].get("direction"),
                datetime.fromisoformat(event["time"]).timestamp(),
            )
        )

    def marks(self, start: float, end: float) -> list[float] | None:
        """[received produced, then per later event: its time and its produce] for the
        window's first record of each kind (an outbound ``appended`` is not the path's)."""
        out: list[float] = []
        for _, event_type, label, _ in PATH:
            hit = next(
                (
                    (produced, at)
                    for produced, kind, direction, at in self.seen_events
                    if kind == event_type and start <= produced <= end and direction != "outbound"
                ),
                None,
            )
            if hit is None:
                return None
            out += [hit[0]] if label is None else [hit[1], hit[0]]
        return out


async def reply_latency(gateway: str, simulator: str, bootstrap: str, pg_url: str, k: int) -> None:
    loop = MainLoop(gateway, simulator)
    observer = PathObserver(bootstrap)
    # whatsapp-gateway's send log: when the dispatcher claimed the send (its transaction)
    gateway_db = await asyncpg.connect(
        asyncpg_dsn(to_asyncpg_url(pg_url, database="pytake_whatsapp_gateway"))
    )
    try:
        tenant = await loop.register("Latency Org")
        number = await loop.connect_number(tenant)
        away = "Closed today, back tomorrow."
        settings = {
            "holidays": [{"date": datetime.now(UTC).date().isoformat()}],
            "business_hours": {"monday": [{"start": "09:00", "end": "18:00"}]},
            "away_message": away,
        }
        await loop.call(
            "PATCH", "/v1/organizations/me", json={"settings": settings}, headers=tenant.headers
        )

        async def closed() -> bool | None:
            r = await loop.call(
                "POST", "/v1/automation/rules/dry-run", json={}, headers=tenant.headers
            )
            return True if r.status_code == 200 and not r.json()["business_open"] else None

        await poll(closed, "automation to learn the holiday")
        await observer.start()
        latencies: list[float] = []
        hops: list[list[float]] = []
        for i in range(k):
            # an idle platform: each customer writes a while after the previous reply
            await asyncio.sleep(random.uniform(0.2, 0.6))
            wa_id = f"1555{i:07d}"
            posted = time.time()
            await loop.customer_says(number, wa_id, "hello?")
            acked = time.time()  # the simulator's post of the webhook was answered

            async def sent(wa_id: str = wa_id) -> float | None:
                r = await loop.sim.get("/_sim/sent", params={"to": wa_id})
                for c in r.json() if r.status_code == 200 else []:
                    if c["body"].get("text", {}).get("body") == away:
                        return datetime.fromisoformat(c["time"]).timestamp()
                return None

            accepted = await poll(sent, "the away message", timeout=60, interval=0.05)
            latencies.append(1000 * (accepted - acked))
            await asyncio.sleep(0.3)  # the observer's fetch
            marks = observer.marks(posted, accepted)
            claimed = await gateway_db.fetchval(
                "SELECT extract(epoch FROM created_at)::float8 FROM send_log WHERE recipient = $1",
                wa_id,
            )
            if marks is not None and claimed is not None:
                stamps = [acked, *marks, claimed, accepted]
                hops.append([1000 * (b - a) for a, b in itertools.pairwise(stamps)])
        print(
            f"away message, webhook acknowledged → Graph API call accepted, over {k}: "
            f"p50 {pct(latencies, 50):.0f} ms, p95 {pct(latencies, 95):.0f} ms, "
            f"max {max(latencies):.0f} ms (target p95 ≤ 500 ms)"
        )
        labels = [lbl for _, _, before, after in PATH for lbl in (before, after) if lbl] + [
            "→ whatsapp-gateway consumes, queues, claims the send",
            "→ the number's pacing slot, Graph API call accepted",
        ]
        print(f"  per hop ({len(hops)} with every timestamp):")
        for n, label in enumerate(labels):
            ms = [h[n] for h in hops]
            if ms:
                print(
                    f"    {label:62} p50 {pct(ms, 50):6.1f}  p95 {pct(ms, 95):6.1f}  "
                    f"max {max(ms):6.1f} ms"
                )
    finally:
        await gateway_db.close()
        await observer.stop()
        await loop.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500, help="part 1's messages (0: skip it)")
    parser.add_argument("--latency", type=int, default=20)
    parser.add_argument(
        "--idle", type=float, default=10.0, help="after part 2: idle CPU window, s (0: skip)"
    )
    parser.add_argument("--batch", type=int, default=1, help="records per consumer batch")
    parser.add_argument("--flows", type=int, default=0, help="published flows per organization")
    parser.add_argument(
        "--campaign",
        type=int,
        default=0,
        help="part 1 also hands over this many campaign sends (with 50 rules and --flows)",
    )
    args = parser.parse_args()
    print(box())
    if args.n:
        matching_only(20_000)
        with infrastructure("automation-cpu", broker=False) as infra:
            asyncio.run(
                cpu_per_message(
                    infra.pg_url, infra.postmaster, args.n, args.flows, args.batch, args.campaign
                )
            )
    if args.latency:
        with platform("automation-latency") as plat:
            asyncio.run(
                reply_latency(
                    plat.stack.url("api-gateway"),
                    plat.stack.url("meta-simulator"),
                    plat.infra.bootstrap,
                    plat.infra.pg_url,
                    args.latency,
                )
            )
            if args.idle > 0:
                asyncio.run(idle_cpu(plat.processes(), args.idle))


if __name__ == "__main__":
    main()
