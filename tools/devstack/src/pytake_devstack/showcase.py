"""``make demo``'s second and third acts: a campaign to a tag and a chatbot flow.

Both run after the main loop, in the same organization and on the same simulated
number, through public HTTP only: the gateway for PyTake, the simulator's control API
for Meta (approving a template, the customer's messages and button presses, what Meta
was asked to send).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pytake_devstack.flow_sample import triage_flow
from pytake_devstack.mainloop import MainLoop, SimNumber, Tenant, poll

#: recipients at or past ``sent`` / ``delivered`` (campaigns' order, failures aside)
_SENT = ("sent", "delivered", "read", "replied")
_DELIVERED = ("delivered", "read", "replied")

PEOPLE = (
    # phone, name, marketing consent
    ("+14155550141", "Ada", True),
    ("+14155550142", "Linus", True),
    ("+14155550143", "Barbara", False),
)
TEMPLATE = {
    "name": "spring_sale",
    "language": "en_US",
    "category": "MARKETING",
    "components": [{"type": "BODY", "text": "Hi {{1}}, our spring sale starts today!"}],
}
FLOW_CUSTOMER = "15550427001"


class DemoError(RuntimeError):
    """A step answered something other than what a working platform answers."""


@dataclass
class CampaignResult:
    campaign: dict[str, Any]
    stats: dict[str, Any]
    replied: dict[str, Any]
    conversation_id: str
    messages: list[dict[str, Any]]


@dataclass
class FlowResult:
    flow: dict[str, Any]
    department: dict[str, Any]
    bot: list[str]
    conversation: dict[str, Any]
    note: str


async def _ok(
    loop: MainLoop, tenant: Tenant, method: str, url: str, body: Any = None, *, key: bool = False
) -> Any:
    headers = dict(tenant.headers)
    if key:
        headers["Idempotency-Key"] = uuid.uuid4().hex
    r = await loop.call(method, url, json=body, headers=headers)
    if r.status_code not in (200, 201, 204):
        raise DemoError(f"{method} {url} answered {r.status_code}: {r.text}")
    return r.json() if r.content else None


def _count(stats: dict[str, Any], statuses: tuple[str, ...]) -> int:
    return sum(int(stats["by_status"].get(s, 0)) for s in statuses)


def shown(message: dict[str, Any]) -> str:
    if message.get("text"):
        return repr(message["text"])
    template = message.get("template")
    if template:
        return f"template {template.get('name')}"
    return str(message.get("type"))


async def campaign(loop: MainLoop, tenant: Tenant, number: SimNumber) -> CampaignResult:
    log = loop.log
    log("\n== Campaign: a MARKETING template to the tagged, opted-in contacts")
    waba_id = (await _ok(loop, tenant, "GET", f"/v1/whatsapp/numbers/{number.id}"))["waba_id"]
    await _ok(loop, tenant, "POST", f"/v1/whatsapp/numbers/{number.id}/templates", TEMPLATE)
    r = await loop.sim.post(
        f"/_sim/templates/{waba_id}/{TEMPLATE['name']}/status", json={"status": "APPROVED"}
    )
    r.raise_for_status()
    log(f"template {TEMPLATE['name']!r} (MARKETING) submitted; Meta (the simulator) approved it")

    tag = await _ok(loop, tenant, "POST", "/v1/tags", {"name": "spring"})
    phones: dict[str, str] = {}
    for phone, name, opted_in in PEOPLE:
        contact = await _ok(loop, tenant, "POST", "/v1/contacts", {"phone": phone, "name": name})
        phones[contact["id"]] = phone
        await _ok(loop, tenant, "PUT", f"/v1/contacts/{contact['id']}/tags/{tag['id']}")
        if opted_in:
            await _ok(
                loop,
                tenant,
                "POST",
                f"/v1/contacts/{contact['id']}/consent",
                {"marketing_opt_in": True, "source": "web form"},
            )
        consent = "marketing opt-in" if opted_in else "no marketing consent"
        log(f"contact {name} {phone} tagged 'spring' ({consent})")

    body = {
        "name": "Spring sale",
        "number_id": number.id,
        "template": {
            "name": TEMPLATE["name"],
            "language": TEMPLATE["language"],
            "parameters": [{"value": "{{contact.name}}", "default": "there"}],
        },
        "audience": {"tags_any": [tag["id"]]},
    }
    expected = sum(1 for _, _, yes in PEOPLE if yes)
    log("waiting for campaigns to learn the number, template, tag and contacts from events...")
    excluded = {"no_marketing_consent": len(PEOPLE) - expected}

    async def ready() -> bool | None:
        frozen = await probe_audience(loop, tenant, body)
        done = frozen and (frozen["recipients_total"], frozen["exclusions"]) == (expected, excluded)
        return done or None

    await poll(ready, "campaigns to know the number, template, tag and contacts", 60)

    created = await _ok(loop, tenant, "POST", "/v1/campaigns", body, key=True)
    started = await _ok(loop, tenant, "POST", f"/v1/campaigns/{created['id']}/start")
    log(
        f"campaign {created['id']} started: {started['recipients_total']} recipients,"
        f" excluded {started['exclusions']}"
    )
    stats_url = f"/v1/campaigns/{created['id']}/stats"

    async def progressed(statuses: tuple[str, ...]) -> dict[str, Any] | None:
        stats: dict[str, Any] = await _ok(loop, tenant, "GET", stats_url)
        return stats if _count(stats, statuses) == stats["recipients_total"] else None

    stats = await poll(lambda: progressed(_SENT), "every recipient to be sent", 60)
    log(f"every recipient sent (campaign {stats['status']}); by status {nonzero(stats)}")
    stats = await poll(lambda: progressed(_DELIVERED), "every recipient delivered", 60)
    log(f"every recipient delivered; by status {nonzero(stats)}")

    page = await _ok(loop, tenant, "GET", f"/v1/campaigns/{created['id']}/recipients")
    first = page["items"][0]
    wa_id = phones[first["contact_id"]].lstrip("+")
    wamid = await loop.customer_says(number, wa_id, "Yes please! Do you ship to Lisbon?")
    conversation = await loop.conversation_with_message(tenant, wamid)
    if conversation["id"] != first["conversation_id"]:
        raise DemoError("the reply landed outside the conversation of the campaign's message")

    async def replied() -> dict[str, Any] | None:
        url = f"/v1/campaigns/{created['id']}/recipients?status=replied"
        items = (await _ok(loop, tenant, "GET", url))["items"]
        return dict(items[0]) if items else None

    marked = await poll(replied, "the recipient to be marked replied", 60)
    stats = await _ok(loop, tenant, "GET", stats_url)
    log(f"recipient {marked['id']} is now {marked['status']!r}; stats replied={stats['replied']}")
    messages = await loop.messages(tenant, conversation["id"])
    return CampaignResult(created, stats, marked, conversation["id"], messages)


async def probe_audience(
    loop: MainLoop, tenant: Tenant, body: dict[str, Any]
) -> dict[str, Any] | None:
    """What starting the campaign ``body`` would freeze now: ``recipients_total`` and
    ``exclusions`` (None while campaigns does not know its number, template or tag).

    Campaigns' replicas fill in from contacts' and whatsapp-gateway's events. A probe
    campaign scheduled an hour ahead freezes its audience at once without sending; it is
    cancelled and deleted (the free plan runs one campaign at a time)."""
    probe = await loop.call(
        "POST",
        "/v1/campaigns",
        json={**body, "name": "audience probe"},
        headers={**tenant.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    if probe.status_code != 201:
        return None
    probe_id = probe.json()["id"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await loop.call(
        "POST",
        f"/v1/campaigns/{probe_id}/start",
        json={"scheduled_at": later},
        headers=tenant.headers,
    )
    if r.status_code == 200:
        await _ok(loop, tenant, "POST", f"/v1/campaigns/{probe_id}/cancel")
    await _ok(loop, tenant, "DELETE", f"/v1/campaigns/{probe_id}")
    return dict(r.json()) if r.status_code == 200 else None


def nonzero(stats: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in stats["by_status"].items() if v}


def triage_with_branch(department_id: str) -> dict[str, Any]:
    """``flow_sample``'s four steps (buttons, name, e-mail, hand-off) with a branch on the
    button pressed: "Sales" ends with a pointer to the price list, "Support" goes on."""
    definition = triage_flow(department_id)
    for node in definition["nodes"]:
        if node["id"] == "topic":
            node["next"] = "route"
    sales = {"kind": "answer", "op": "equals", "value": "sales"}
    definition["nodes"] += [
        {
            "id": "route",
            "type": "branch",
            "cases": [{"when": sales, "next": "prices"}],
            "default": "name",
        },
        {"id": "prices", "type": "end", "message": "Our price list: https://example.com/prices"},
    ]
    return definition


def _bot_text(call: dict[str, Any]) -> str:
    body = call["body"]
    if body["type"] == "text":
        return str(body["text"]["body"])
    if body["type"] == "interactive":
        inter = body["interactive"]
        titles = [b["reply"]["title"] for b in inter.get("action", {}).get("buttons", [])]
        return f"{inter['body']['text']}  [{' | '.join(titles)}]"
    return str(body["type"])


async def flow(loop: MainLoop, tenant: Tenant, number: SimNumber) -> FlowResult:
    log = loop.log
    log("\n== Chatbot flow: buttons → branch → name → e-mail → hand-off")
    department = await _ok(loop, tenant, "POST", "/v1/departments", {"name": "Support"})
    # contacts keeps only defined attributes: the flow stores the e-mail in one
    await _ok(
        loop,
        tenant,
        "POST",
        "/v1/contact-attributes",
        {"key": "email", "label": "E-mail", "type": "text"},
    )
    created = await _ok(
        loop,
        tenant,
        "POST",
        "/v1/automation/flows",
        {"name": "Triage", "definition": triage_with_branch(department["id"])},
        key=True,
    )
    dry = await _ok(
        loop,
        tenant,
        "POST",
        f"/v1/automation/flows/{created['id']}/test",
        {"inputs": [{"reply": {"kind": "button", "id": "sales", "title": "Sales"}}]},
    )
    said = [a.get("text") for t in dry["turns"] for a in t["actions"] if a["type"] == "send_text"]
    log(
        f"test run of the draft, pressing [Sales]: {dry['status']}"
        f" ({dry['end_reason']}) after saying {said[-1]!r}; nothing was sent"
    )
    version = await _ok(
        loop, tenant, "POST", f"/v1/automation/flows/{created['id']}/publish", key=True
    )
    log(f"flow 'Triage' {created['id']} published (version {version['version']})")
    await _ok(
        loop,
        tenant,
        "POST",
        "/v1/automation/rules",
        {
            "name": "'help' starts the triage",
            "trigger": {"type": "message_received"},
            "conditions": [{"type": "text_contains", "words": ["help"]}],
            "actions": [{"type": "start_flow", "flow_id": created["id"]}],
        },
        key=True,
    )
    log("rule: a customer message containing 'help' starts the flow")

    seen = 0

    async def bot_says(count: int) -> list[str]:
        nonlocal seen

        async def enough() -> list[dict[str, Any]] | None:
            calls = [
                c
                for c in await loop.graph_calls(number.phone_number_id)
                if c["to"] == FLOW_CUSTOMER
            ]
            return calls if len(calls) >= count else None

        calls = await poll(enough, f"{count} bot message(s) to the customer", 60)
        texts = [_bot_text(c) for c in calls[seen:count]]
        for text in texts:
            log(f"  bot      → {text}")
        seen = count
        return [_bot_text(c) for c in calls[:count]]

    await loop.customer_says(number, FLOW_CUSTOMER, "Hello, I need help")
    await bot_says(1)
    await loop.customer_presses(number, FLOW_CUSTOMER, "support", "Support")
    await bot_says(2)
    await loop.customer_says(number, FLOW_CUSTOMER, "Grace")
    await bot_says(3)
    await loop.customer_says(number, FLOW_CUSTOMER, "grace at example")
    await bot_says(5)  # the reprompt, then the question again
    await loop.customer_says(number, FLOW_CUSTOMER, "grace@example.com")
    bot = await bot_says(6)

    async def handed_off() -> dict[str, Any] | None:
        r = await loop.call("GET", "/v1/conversations", headers=tenant.headers)
        for conv in r.json()["items"] if r.status_code == 200 else []:
            if conv.get("department_id") == department["id"]:
                return dict(conv)
        return None

    conversation = await poll(handed_off, "the conversation to reach the department", 60)
    messages = await loop.messages(tenant, conversation["id"])
    notes = [str(m.get("text")) for m in messages if m["direction"] == "note"]
    log(f"conversation {conversation['id']} assigned to department {department['name']!r}")
    return FlowResult(created, department, bot, conversation, notes[-1] if notes else "")
