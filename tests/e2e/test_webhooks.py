"""Outgoing webhooks end to end: an inbound WhatsApp message and an agent's reply reach a
receiver on loopback as signed public events, through every service."""

import asyncio
import json
import secrets

from aiohttp import web

from pytake_devstack.mainloop import poll
from pytake_integrations.signing import verify


async def test_receiver_gets_signed_message_received_and_the_replys_statuses(loop):
    got: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        tenant = await loop.register("Webhook Co")
        r = await loop.call(
            "POST",
            "/v1/webhook-endpoints",
            json={
                "url": f"http://127.0.0.1:{port}/hook",
                "event_types": ["message.received", "message.sent", "message.read"],
            },
            headers=tenant.headers,
        )
        assert r.status_code == 201, r.text
        secret = r.json()["secret"]

        number = await loop.connect_number(tenant)
        wa_id = "1555" + str(1000000 + secrets.randbelow(8999999))
        wamid = await loop.customer_says(number, wa_id, "Where is my parcel?")
        conversation = await loop.conversation_with_message(tenant, wamid)

        def of_type(kind: str) -> list[dict]:
            return [json.loads(body) for _, body in got if json.loads(body)["type"] == kind]

        async def received() -> list[dict] | None:
            return of_type("message.received") or None

        [event] = await poll(received, "message.received at the receiver", 30)
        assert event["organization_id"] == tenant.organization_id
        assert event["data"]["conversation_id"] == conversation["id"]
        inbound = [
            m for m in await loop.messages(tenant, conversation["id"]) if m["wamid"] == wamid
        ]
        assert event["data"]["message_id"] == inbound[0]["id"]

        reply = await loop.reply(tenant, conversation["id"], "It ships today.")
        reply.raise_for_status()
        await loop.wait_status(tenant, conversation["id"], reply.json()["id"], "read")

        async def read() -> list[dict] | None:
            return of_type("message.read") or None

        [read_event] = await poll(read, "message.read at the receiver", 30)
        assert read_event["data"]["message_id"] == reply.json()["id"]
        # every delivery is signed with the endpoint's secret and carries a delivery id;
        # the reply's statuses came in order (one conversation, one endpoint)
        assert all(verify(body, h["PyTake-Signature"], secret) for h, body in got)
        assert len({h["PyTake-Delivery-Id"] for h, _ in got}) == len(got)
        statuses = [
            json.loads(b)["type"]
            for _, b in got
            if json.loads(b)["data"].get("message_id") == reply.json()["id"]
        ]
        # (a "sent" overtaken by "read" at conversations is never emitted: forward only)
        assert statuses in (["message.sent", "message.read"], ["message.read"])
    finally:
        await asyncio.shield(runner.cleanup())
