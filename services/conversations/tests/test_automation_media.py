"""A flow's media send (``send_media``) applied by conversations like any automatic send."""

import uuid

from .helpers import emitted, message_rows, opened
from .test_automation_actions import apply, outcomes, requested


async def test_send_media_is_sent_once_as_its_type(app):
    org, flow = uuid.uuid4(), uuid.uuid4()
    conv = await opened(app, org)
    media = {"link": "https://cdn.example.com/menu.pdf", "caption": "Menu", "filename": "menu.pdf"}
    event = requested(
        org, conv, {"type": "send_media", "media_type": "document", "media": media}, rule=flow
    )
    await apply(app, event)
    await apply(app, event.model_copy(update={"id": uuid.uuid4()}))
    [sent] = [m for m in await message_rows(app, org) if m["direction"] == "outbound"]
    assert (sent["type"], sent["text"], sent["sender_type"]) == ("document", "Menu", "automation")
    [send] = await emitted(app, org, "message.send_requested.v1")
    assert send["data"]["type"] == "document"
    assert send["data"]["payload"] == media
    assert await outcomes(app, org) == {"send_media": "applied"}


async def test_an_invalid_media_object_is_recorded_not_sent(app):
    org = uuid.uuid4()
    conv = await opened(app, org)
    bad = {"type": "send_media", "media_type": "image", "media": {"caption": "no source"}}
    await apply(app, requested(org, conv, bad))
    assert [m for m in await message_rows(app, org) if m["direction"] == "outbound"] == []
    assert (await outcomes(app, org))["send_media"] != "applied"
