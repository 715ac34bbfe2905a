"""Every message type Meta documents, parsed into the typed fields (pure, no database)."""

from datetime import UTC, datetime
from typing import Any

from pytake_whatsapp_gateway.webhooks.parsing import InboundMessage, parse_delivery

from .helpers import change, envelope

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SENDER = "5511999990000"


def parse_one(kind: str, inner: Any, **extra: Any) -> InboundMessage:
    message = {"from": SENDER, "id": f"wamid.{kind}", "timestamp": "1764000000", "type": kind}
    if inner is not None:
        message[kind] = inner
    message.update(extra)
    [parsed] = parse_delivery(envelope([change("100", messages=[message])]), NOW).messages
    assert parsed.content == message  # the raw object is always kept whole
    assert parsed.type == kind
    return parsed


def test_text_with_reply_context_and_ad_referral():
    referral = {
        "source_url": "https://fb.me/ad",
        "source_type": "ad",
        "source_id": "120",
        "headline": "Promo",
        "ctwa_clid": "ARAkLk",
    }
    m = parse_one(
        "text",
        {"body": "  quero  "},
        context={"from": "15550100000", "id": "wamid.quoted"},
        referral=referral,
    )
    assert m.text == "  quero  "
    assert m.context == {"from": "15550100000", "id": "wamid.quoted", "forwarded": False}
    assert m.referral == referral
    assert m.media is None and m.reaction is None


def test_forwarded_messages_are_marked():
    m = parse_one("text", {"body": "fwd"}, context={"frequently_forwarded": True})
    assert m.context == {"from": None, "id": None, "forwarded": True}


def test_media_types_carry_id_mime_sha_caption_filename_and_voice():
    image = parse_one(
        "image", {"id": "m1", "mime_type": "image/jpeg", "sha256": "s1", "caption": "nota"}
    )
    assert image.text == "nota"
    assert image.media is not None
    assert (image.media.media_id, image.media.mime_type, image.media.sha256) == (
        "m1",
        "image/jpeg",
        "s1",
    )
    voice = parse_one(
        "audio", {"id": "m2", "mime_type": "audio/ogg; codecs=opus", "sha256": "s2", "voice": True}
    )
    assert voice.media is not None and voice.media.voice is True and voice.text is None
    audio = parse_one("audio", {"id": "m3", "mime_type": "audio/mpeg", "sha256": "s3"})
    assert audio.media is not None and audio.media.voice is False
    doc = parse_one(
        "document",
        {"id": "m4", "mime_type": "application/pdf", "sha256": "s4", "filename": "boleto.pdf"},
    )
    assert doc.media is not None and doc.media.filename == "boleto.pdf"
    for kind in ("video", "sticker"):
        m = parse_one(kind, {"id": f"m-{kind}", "mime_type": f"{kind}/x", "sha256": "h"})
        assert m.media is not None and m.media.media_id == f"m-{kind}"
    # Without an id there is nothing to fetch: no typed media, the raw object stays.
    assert parse_one("image", {"mime_type": "image/png"}).media is None


def test_interactive_replies_and_template_quick_replies():
    button = parse_one(
        "interactive", {"type": "button_reply", "button_reply": {"id": "yes", "title": "Sim"}}
    )
    assert button.text == "Sim"
    row = parse_one(
        "interactive",
        {
            "type": "list_reply",
            "list_reply": {"id": "r1", "title": "Boleto", "description": "2ª via"},
        },
    )
    assert row.text == "Boleto"
    flow = parse_one(
        "interactive",
        {
            "type": "nfm_reply",
            "nfm_reply": {"name": "flow", "body": "Sent", "response_json": '{"a": 1}'},
        },
    )
    assert flow.text == "Sent"
    quick = parse_one("button", {"payload": "STOP_PROMOS", "text": "Parar promoções"})
    assert quick.text == "Parar promoções"


def test_reactions_and_their_removal():
    added = parse_one("reaction", {"message_id": "wamid.ours", "emoji": "👍"})
    assert added.reaction is not None
    assert (added.reaction.message_id, added.reaction.emoji) == ("wamid.ours", "👍")
    removed = parse_one("reaction", {"message_id": "wamid.ours"})
    assert removed.reaction is not None and removed.reaction.emoji == ""


def test_location_contacts_order_system_welcome_edit_revoke_are_kept():
    location = parse_one("location", {"latitude": -23.5, "longitude": -46.6, "name": "Loja"})
    assert location.content["location"]["latitude"] == -23.5 and location.text is None
    contacts = parse_one("contacts", [{"name": {"formatted_name": "Ana"}, "phones": []}])
    assert contacts.content["contacts"][0]["name"]["formatted_name"] == "Ana"
    order = parse_one(
        "order", {"catalog_id": "c1", "product_items": [{"product_retailer_id": "p"}]}
    )
    assert order.content["order"]["catalog_id"] == "c1"
    system = parse_one(
        "system",
        {
            "body": "User changed number",
            "new_wa_id": "5511888880000",
            "type": "user_changed_number",
        },
    )
    assert system.text == "User changed number"
    welcome = parse_one("request_welcome", None)
    assert welcome.text is None
    edit = parse_one(
        "edit",
        {"original_message_id": "wamid.old", "message": {"type": "text", "text": {"body": "novo"}}},
    )
    assert edit.text == "novo"
    revoke = parse_one("revoke", {"original_message_id": "wamid.old"})
    assert revoke.content["revoke"] == {"original_message_id": "wamid.old"}


def test_unsupported_keeps_errors_and_unknown_types_stay_raw():
    errors = [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown"}]
    unsupported = parse_one("unsupported", None, errors=errors)
    assert unsupported.content["errors"] == errors
    future = parse_one("hologram", {"id": "h1", "depth": 3})
    assert future.content["hologram"] == {"id": "h1", "depth": 3} and future.text is None


def test_waba_level_changes_are_read_with_their_account():
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA9",
                "time": 1764000000,
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {"event": "APPROVED", "message_template_name": "promo"},
                    },
                    {
                        "field": "phone_number_quality_update",
                        "value": {"display_phone_number": "15550100", "event": "FLAGGED"},
                    },
                ],
            }
        ],
    }
    parsed = parse_delivery(payload, NOW)
    assert parsed.waba_ids == ["WABA9"] and parsed.phone_number_ids == []
    assert [(c.field, c.time) for c in parsed.waba_changes] == [
        ("message_template_status_update", 1764000000),
        ("phone_number_quality_update", 1764000000),
    ]
