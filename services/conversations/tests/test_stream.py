"""The realtime stream: frames per organization only, resume after reconnect, auth."""

import asyncio
import contextlib
import json
import socket
import uuid

import pytest
import uvicorn
import websockets

from pytake_conversations.stream import QUEUE_SIZE, StreamHub, parse_payload

from .helpers import Customer, deliver, opened


@pytest.fixture
async def server(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(srv.serve())
    for _ in range(500):
        if srv.started:
            break
        await asyncio.sleep(0.02)
    yield f"ws://127.0.0.1:{port}"
    await app.state.stream_hub.stop()
    srv.should_exit = True
    await task


async def frames_until(ws, predicate, timeout=5.0):
    """Frames received until one satisfies ``predicate`` (included)."""
    got = []
    async with asyncio.timeout(timeout):
        while True:
            got.append(json.loads(await ws.recv()))
            if predicate(got[-1]):
                return got


async def _drain(ws) -> None:
    """Read frames until the socket closes (raises ``ConnectionClosed``)."""
    while True:
        await ws.recv()


async def no_frame(ws, wait=0.5):
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait):
            return json.loads(await ws.recv())
    return None


def connect(base, tokens, org, role="agent", query="", header=True):
    token = tokens.mint(organization_id=org, role=role)
    if header:
        return websockets.connect(
            f"{base}/v1/stream{query}", additional_headers={"Authorization": f"Bearer {token}"}
        )
    sep = "&" if query else "?"
    return websockets.connect(f"{base}/v1/stream{query}{sep}access_token={token}")


async def test_each_organization_gets_only_its_own_events(app, server, tokens):
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    async with (
        connect(server, tokens, org_a) as ws_a,
        connect(server, tokens, org_b, role="viewer", header=False) as ws_b,
    ):
        await deliver(app, Customer(org_a).says("for A"))
        frames = await frames_until(ws_a, lambda f: f["type"] == "message.created")
        assert [f["type"] for f in frames] == ["conversation.created", "message.created"]
        assert frames[1]["data"]["message"]["text"] == "for A"
        assert frames[1]["data"]["message"]["direction"] == "inbound"
        assert frames[0]["id"] < frames[1]["id"]
        assert await no_frame(ws_b) is None  # B heard nothing of A

        await deliver(app, Customer(org_b).says("for B"))
        frames_b = await frames_until(ws_b, lambda f: f["type"] == "message.created")
        assert frames_b[-1]["data"]["message"]["text"] == "for B"
        assert {f["data"]["conversation"]["organization_id"] for f in frames_b[:1]} == {str(org_b)}
        assert await no_frame(ws_a, 0.3) is None


async def test_outbound_status_and_notes_are_pushed_and_viewers_cannot_write(
    app, client, server, tokens
):
    org = uuid.uuid4()
    conv = await opened(app, org)
    async with connect(server, tokens, org, role="viewer") as ws:
        viewer = tokens.headers(organization_id=org, role="viewer")
        url = f"/v1/conversations/{conv['id']}"
        r = await client.post(
            f"{url}/messages", json={"type": "text", "text": {"body": "x"}}, headers=viewer
        )
        assert r.status_code == 403
        await ws.send(json.dumps({"type": "message.create", "text": "ignored"}))
        agent = tokens.headers(organization_id=org, role="agent")
        r = await client.post(
            f"{url}/messages", json={"type": "text", "text": {"body": "on it"}}, headers=agent
        )
        assert r.status_code == 202
        r = await client.post(f"{url}/status", json={"status": "resolved"}, headers=agent)
        assert r.status_code == 200
        frames = await frames_until(ws, lambda f: f["type"] == "conversation.status_changed")
        assert [f["type"] for f in frames] == [
            "conversation.updated",
            "message.created",
            "conversation.status_changed",
        ]
        assert frames[1]["data"]["message"]["direction"] == "outbound"
        assert (frames[2]["data"]["old_status"], frames[2]["data"]["new_status"]) == (
            "open",
            "resolved",
        )
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"


async def test_resume_replays_missed_events_in_order(app, server, tokens):
    org = uuid.uuid4()
    customer = Customer(org)
    async with connect(server, tokens, org) as ws:
        await deliver(app, customer.says("one"))
        seen = await frames_until(ws, lambda f: f["type"] == "message.created")
    last = seen[-1]["id"]
    await deliver(app, customer.says("two"))  # while disconnected
    await deliver(app, customer.says("three"))
    async with connect(server, tokens, org, query=f"?last_event_id={last}") as ws:
        replayed = await frames_until(
            ws, lambda f: f["type"] == "message.created" and f["data"]["message"]["text"] == "three"
        )
        await deliver(app, customer.says("four"))  # live after the replay
        live = await frames_until(ws, lambda f: f["type"] == "message.created")
    texts = [f["data"]["message"]["text"] for f in replayed if f["type"] == "message.created"]
    assert texts == ["two", "three"]
    ids = [f["id"] for f in replayed + live]
    assert ids == sorted(set(ids)) and ids[0] > last
    assert live[-1]["data"]["message"]["text"] == "four"


async def test_frames_too_big_for_a_notification_are_read_from_the_table(app, server, tokens):
    """Frames ride in the NOTIFY payload when they fit; a bigger one is read by id."""
    org = uuid.uuid4()
    customer = Customer(org)
    big = "é" * 4096  # WhatsApp's longest text: 8 KiB in UTF-8, over PostgreSQL's limit
    async with connect(server, tokens, org) as ws:
        await deliver(app, customer.says("small"))
        await deliver(app, customer.says(big))
        await deliver(app, customer.says("after"))
        live = await frames_until(
            ws, lambda f: f["type"] == "message.created" and f["data"]["message"]["text"] == "after"
        )
    texts = [f["data"]["message"]["text"] for f in live if f["type"] == "message.created"]
    assert texts == ["small", big, "after"]
    ids = [f["id"] for f in live]
    assert ids == sorted(set(ids))
    async with connect(server, tokens, org, query=f"?last_event_id={ids[0] - 1}") as ws:
        replayed = await frames_until(ws, lambda f: f["id"] == ids[-1])
    assert replayed == live  # the notified frames are exactly the stored ones


async def test_the_stream_refuses_missing_or_bad_tokens(server, tokens):
    for kwargs in ({}, {"additional_headers": {"Authorization": "Bearer nope"}}):
        with pytest.raises(websockets.InvalidStatus) as exc:
            async with websockets.connect(f"{server}/v1/stream", **kwargs):
                pass
        assert exc.value.response.status_code == 401
    with pytest.raises(websockets.InvalidStatus) as exc:
        async with connect(server, tokens, uuid.uuid4(), query="?last_event_id=abc"):
            pass
    assert exc.value.response.status_code == 422


async def test_the_stream_refuses_two_access_tokens(server, tokens):
    """Starlette reads the last ``access_token``, the gateway (before it refused
    them) the first: two are refused here too, whichever is valid."""
    good = tokens.mint(organization_id=uuid.uuid4())
    for pair in ((good, "nope"), ("nope", good), (good, good)):
        url = f"{server}/v1/stream?access_token={pair[0]}&access_token={pair[1]}"
        with pytest.raises(websockets.InvalidStatus) as exc:
            async with websockets.connect(url):
                pass
        assert exc.value.response.status_code == 400
        assert json.loads(exc.value.response.body)["code"] == "duplicate_access_token"


async def test_the_stream_closes_when_its_token_expires(server, tokens):
    token = tokens.mint(organization_id=uuid.uuid4(), ttl=2)
    async with websockets.connect(
        f"{server}/v1/stream", additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"  # open while the token is valid
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(4):
                await ws.recv()
    assert closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "token_expired"


def test_notification_payloads_are_checked_before_use():
    org = uuid.uuid4()
    frame = {"id": 7, "type": "message.created", "data": {"message": {"text": "a:b"}}}
    body = json.dumps(frame)
    assert parse_payload(f"{org}:7:{body}") == (org, 7, frame)
    assert parse_payload(f"{org}:7") == (org, 7, None)  # too big: read from the table
    assert parse_payload(f"{org}:7:{body}", wanted={uuid.uuid4()}) is None  # not listened to
    for bad in ("", "nope:7", f"{org}:x", f"{org}:8:{body}", f"{org}:7:[1]", f"{org}:7:{{"):
        assert parse_payload(bad) is None, bad


async def test_a_hub_that_lost_its_listen_connection_makes_subscribers_resume(app, server, tokens):
    """NOTIFY keeps nothing for a listener that is away: events committed while the hub
    reconnects (PostgreSQL restarted; the fault suite's realtime client missed 14 this
    way) would never reach an open socket. Once LISTEN is back, every subscriber is
    closed with 1013 and resumes from the table with ``last_event_id``."""
    import asyncpg

    from pytake_common.pgtenant import asyncpg_dsn

    org = uuid.uuid4()
    customer = Customer(org)
    hub = app.state.stream_hub
    async with connect(server, tokens, org) as ws:
        await deliver(app, customer.says("before"))
        seen = await frames_until(ws, lambda f: f["type"] == "message.created")
        admin = await asyncpg.connect(asyncpg_dsn(app.state.db.url))
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", hub._conn.get_server_pid())
        finally:
            await admin.close()
        await deliver(app, customer.says("while away"))  # its NOTIFY reaches no one
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(_drain(ws), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    last = seen[-1]["id"]
    async with connect(server, tokens, org, query=f"?last_event_id={last}") as ws:
        replayed = await frames_until(ws, lambda f: f["type"] == "message.created")
    assert replayed[-1]["data"]["message"]["text"] == "while away"


async def test_a_stopping_hub_closes_even_a_subscriber_whose_queue_is_full(app) -> None:
    """Its socket ends with "resume with last_event_id" rather than waiting for a frame
    that never comes (a full queue once swallowed the hub's last word)."""
    hub = StreamHub(app.state.db)
    full, idle = hub.subscribe(uuid.uuid4()), hub.subscribe(uuid.uuid4())
    for n in range(QUEUE_SIZE):
        full.queue.put_nowait({"id": n + 1, "type": "message.created", "data": {}})
    await hub.stop()
    frames = [full.queue.get_nowait() for _ in range(full.queue.qsize())]
    assert frames[-1] is None and full.overflowed  # the client resumes from the table
    assert [idle.queue.get_nowait()] == [None]
