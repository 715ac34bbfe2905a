import json
import logging
import uuid

import pytest

from pytake_common.crypto import SecretBox, SecretDecryptionError
from pytake_common.events import CloudEvent, EventData
from pytake_common.ids import contact_id_for
from pytake_common.logging import JsonFormatter


class Pinged(EventData):
    event_type = "pytake.testing.thing.pinged.v1"
    topic = "pytake.testing.thing"
    thing_id: uuid.UUID


def test_cloudevent_envelope_has_the_required_attributes():
    org, thing = uuid.uuid4(), uuid.uuid4()
    ev = CloudEvent.of(Pinged(thing_id=thing), service="testing", subject=thing, tenant_id=org)
    body = json.loads(ev.to_bytes())
    assert body["specversion"] == "1.0"
    assert body["type"] == "pytake.testing.thing.pinged.v1"
    assert body["source"] == "pytake/testing"
    assert body["subject"] == str(thing) and body["tenantid"] == str(org)
    assert body["data"] == {"thing_id": str(thing)}
    assert ev.topic == "pytake.testing.thing"
    assert uuid.UUID(body["id"])


def test_event_types_must_follow_the_naming_rule():
    with pytest.raises(ValueError, match="bad event type"):
        type("Bad", (EventData,), {"event_type": "Pinged", "topic": "x"})
    with pytest.raises(ValueError, match="aggregate topic"):
        type("Bad2", (EventData,), {"event_type": "pytake.a.b.c.v1", "topic": "pytake.a.z"})


def test_secret_box_round_trip_and_rotation():
    old = SecretBox("old-key")
    token = old.encrypt("EAAG-secret")
    assert "EAAG" not in token
    both = SecretBox("new-key,old-key")
    assert both.decrypt(token) == "EAAG-secret"
    rotated = both.rotate(token)
    assert SecretBox("new-key").decrypt(rotated) == "EAAG-secret"
    with pytest.raises(SecretDecryptionError):
        SecretBox("new-key").decrypt(token)


def test_contact_id_is_stable_and_tenant_scoped():
    a, b = uuid.uuid4(), uuid.uuid4()
    assert contact_id_for(a, "15551234567") == contact_id_for(str(a), "15551234567")
    assert contact_id_for(a, "15551234567") != contact_id_for(b, "15551234567")
    assert contact_id_for(a, None, "US.123") != contact_id_for(a, "15551234567")
    with pytest.raises(ValueError):
        contact_id_for(a, None, None)


def test_json_logs_carry_structured_fields():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.event_id = "e1"
    out = json.loads(JsonFormatter("svc").format(record))
    assert out["msg"] == "hello world" and out["service"] == "svc" and out["event_id"] == "e1"
