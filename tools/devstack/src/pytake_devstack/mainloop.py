"""The platform's main loop, driven from outside through the gateway and the simulator.

``make demo`` prints it (then ``showcase``'s campaign and flow); the end-to-end test
asserts on it. Everything goes through public HTTP: the gateway for PyTake, the
simulator's control API for "the customer" and for what Meta received.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

Log = Callable[[str], None]
T = TypeVar("T")


def text_webhook(
    phone_number_id: str, wa_id: str, text: str, *, name: str = "Customer", tag: str = "TEST"
) -> tuple[bytes, str]:
    """The raw body of a one-message text webhook as Meta sends it, and its wamid (unique;
    ``tag`` marks who made it). Sign it with the number's app secret before posting."""
    wamid = f"wamid.{tag}" + secrets.token_hex(12)
    message = {
        "from": wa_id,
        "id": wamid,
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "messages": [message],
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(body, separators=(",", ":")).encode(), wamid


def _quiet(_: str) -> None:
    return None


#: An outbound message's delivery statuses, in the only order they move.
DELIVERY_ORDER = ["sent", "delivered", "read"]

#: How long the main loop's steps may take to show (a 2-core CI box running nine services
#: and the suite's other load can take tens of seconds; a healthy step shows in well under one).
POLL_TIMEOUT_S = 60.0


async def poll(
    fetch: Callable[[], Awaitable[T | None]],
    what: str,
    timeout: float = POLL_TIMEOUT_S,
    interval: float = 0.2,
) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if value is not None:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class Tenant:
    access_token: str
    organization_id: str
    email: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class SimNumber:
    id: str
    phone_number_id: str
    app_secret: str
    access_token: str
    verify_token: str


@dataclass
class LoopResult:
    tenant: Tenant
    number: SimNumber
    customer_wa_id: str
    conversation: dict[str, Any]
    messages: list[dict[str, Any]]
    graph_calls: list[dict[str, Any]] = field(default_factory=list)


class MainLoop:
    def __init__(self, gateway: str, simulator: str, log: Log = _quiet) -> None:
        self.gw = httpx.AsyncClient(base_url=gateway, timeout=20.0)
        self.sim = httpx.AsyncClient(base_url=simulator, timeout=20.0)
        self.log = log

    async def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A gateway request that waits out 429s (plans limit API calls per minute)."""
        for _ in range(20):
            r = await self.gw.request(method, url, **kwargs)
            if r.status_code != 429:
                return r
            await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 5.0))
        return r

    async def aclose(self) -> None:
        await self.gw.aclose()
        await self.sim.aclose()

    async def register(self, org_name: str = "Acme Support") -> Tenant:
        email = f"owner+{secrets.token_hex(4)}@example.com"
        r = await self.call(
            "POST",
            "/v1/auth/register",
            json={
                "email": email,
                "password": "correct horse battery staple",
                "full_name": "Ada Owner",
                "organization_name": org_name,
            },
        )
        r.raise_for_status()
        body = r.json()
        tenant = Tenant(body["access_token"], body["user"]["organization_id"], email)
        self.log(f"registered {email} → organization {tenant.organization_id}")

        async def org() -> dict[str, Any] | None:
            resp = await self.call("GET", "/v1/organizations/me", headers=tenant.headers)
            return resp.json() if resp.status_code == 200 else None

        created = await poll(org, "the organization to be created from the event")
        self.log(f"tenants created organization '{created['name']}' (slug {created['slug']})")
        return tenant

    async def connect_number(self, tenant: Tenant) -> SimNumber:
        phone_number_id = str(100000000000000 + secrets.randbelow(10**14))
        creds = {
            "access_token": "EAAG" + secrets.token_urlsafe(24),
            "app_secret": secrets.token_hex(16),
            "verify_token": secrets.token_urlsafe(12),
        }
        body = {
            "phone_number_id": phone_number_id,
            "waba_id": str(secrets.randbelow(10**15)),
            "display_phone_number": "+1 555 0100",
            **creds,
        }
        # The number exists at "Meta" first, owned by its token: registering proves that
        # the token controls it (the gateway asks the Graph API).
        sim = await self.sim.post(
            "/_sim/numbers",
            json={
                k: body[k]
                for k in (
                    "phone_number_id",
                    "waba_id",
                    "display_phone_number",
                    "access_token",
                    "app_secret",
                )
            },
        )
        sim.raise_for_status()
        r = await self.call(
            "POST",
            "/v1/whatsapp/numbers",
            json=body,
            headers={**tenant.headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        r.raise_for_status()
        number = SimNumber(
            r.json()["id"],
            phone_number_id,
            creds["app_secret"],
            creds["access_token"],
            creds["verify_token"],
        )
        self.log(f"connected WhatsApp number {phone_number_id} (simulated by Meta simulator)")
        return number

    async def _inbound(
        self, number: SimNumber, wa_id: str, name: str, content: dict[str, Any]
    ) -> str:
        """The simulator posts one signed customer message to PyTake; its wamid."""
        r = await self.sim.post(
            "/_sim/inbound",
            json={
                "phone_number_id": number.phone_number_id,
                "from_wa_id": wa_id,
                "profile_name": name,
                **content,
            },
        )
        r.raise_for_status()
        body = r.json()
        if body.get("status_code") != 200:
            raise RuntimeError(f"webhook was answered {body.get('status_code')}")
        return str(body["wamid"])

    async def customer_says(
        self, number: SimNumber, wa_id: str, text: str, name: str = "Grace Customer"
    ) -> str:
        wamid = await self._inbound(number, wa_id, name, {"text": text})
        self.log(f"customer {wa_id} sent {text!r} (wamid {wamid})")
        return wamid

    async def customer_presses(
        self, number: SimNumber, wa_id: str, button_id: str, title: str, name: str = "Customer"
    ) -> str:
        """The customer taps a reply button of the last interactive message sent to them."""
        reply = {"type": "button_reply", "id": button_id, "title": title}
        wamid = await self._inbound(number, wa_id, name, {"interactive": reply})
        self.log(f"customer {wa_id} pressed [{title}] (wamid {wamid})")
        return wamid

    async def conversation_with_message(self, tenant: Tenant, wamid: str) -> dict[str, Any]:
        async def find() -> dict[str, Any] | None:
            r = await self.call("GET", "/v1/conversations", headers=tenant.headers)
            for conv in r.json().get("items", []) if r.status_code == 200 else []:
                msgs = await self.messages(tenant, conv["id"])
                if any(m.get("wamid") == wamid for m in msgs):
                    return dict(conv)
            return None

        conv = await poll(find, "the inbound message to reach a conversation")
        self.log(f"agent sees conversation {conv['id']} ({conv['status']})")
        return conv

    async def messages(self, tenant: Tenant, conversation_id: str) -> list[dict[str, Any]]:
        r = await self.call(
            "GET",
            f"/v1/conversations/{conversation_id}/messages",
            headers=tenant.headers,
            params={"limit": 100},
        )
        r.raise_for_status()
        return list(r.json()["items"])

    async def reply(
        self, tenant: Tenant, conversation_id: str, text: str, key: str | None = None
    ) -> httpx.Response:
        return await self.call(
            "POST",
            f"/v1/conversations/{conversation_id}/messages",
            json={"type": "text", "text": {"body": text}},
            headers={**tenant.headers, "Idempotency-Key": key or uuid.uuid4().hex},
        )

    async def wait_status(
        self,
        tenant: Tenant,
        conversation_id: str,
        message_id: str,
        status: str,
        timeout: float = POLL_TIMEOUT_S,
    ) -> dict[str, Any]:
        # Meta's statuses only move forward, and the simulator sends delivered and read
        # right after sent: a message already past ``status`` has been through it.
        reached = (
            set(DELIVERY_ORDER[DELIVERY_ORDER.index(status) :])
            if status in DELIVERY_ORDER
            else {status}
        )

        async def find() -> dict[str, Any] | None:
            for m in await self.messages(tenant, conversation_id):
                if m["id"] == message_id and m["status"] in reached:
                    return m
            return None

        return await poll(find, f"message {message_id} to become {status}", timeout)

    async def graph_calls(self, phone_number_id: str) -> list[dict[str, Any]]:
        r = await self.sim.get("/_sim/sent")
        r.raise_for_status()
        return [c for c in r.json() if c.get("phone_number_id") == phone_number_id]

    async def run(self) -> LoopResult:
        tenant = await self.register()
        number = await self.connect_number(tenant)
        wa_id = "1555" + str(1000000 + secrets.randbelow(8999999))
        wamid = await self.customer_says(number, wa_id, "Hi! My order #1042 has not arrived.")
        conv = await self.conversation_with_message(tenant, wamid)
        r = await self.reply(tenant, conv["id"], "Sorry about that — it ships today!")
        r.raise_for_status()
        sent = r.json()
        self.log(f"agent replied (message {sent['id']}, status {sent['status']})")
        await self.wait_status(tenant, conv["id"], sent["id"], "read")
        messages = await self.messages(tenant, conv["id"])
        return LoopResult(
            tenant, number, wa_id, conv, messages, await self.graph_calls(number.phone_number_id)
        )
