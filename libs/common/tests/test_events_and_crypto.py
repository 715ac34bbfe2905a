import json
import logging
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from pytake_common.crypto import SecretBox, SecretDecryptionError
from pytake_common.events import CloudEvent, EventData, TenantEventData, TenantMismatch
from pytake_common.ids import contact_id_for
from pytake_common.logging import JsonFormatter


class Pinged(EventData):
    event_type = "pytake.testing.thing.pinged.v1"
    topic = "pytake.testing.thing"
    service = "testing"
    thing_id: uuid.UUID


class Moved(EventData):
    event_type = "pytake.testing.thing.moved.v1"
    topic = "pytake.testing.thing"
    service = "testing"
    thing_id: uuid.UUID
    organization_id: uuid.UUID
    at: datetime
    until: datetime | None = None


class MovedFacts(TenantEventData):
    """A consumer's tolerant reader of ``Moved``."""

    organization_id: uuid.UUID
    at: datetime


def test_cloudevent_envelope_has_the_required_attributes():
    org, thing = uuid.uuid4(), uuid.uuid4()
    ev = CloudEvent.of(Pinged(thing_id=thing), subject=thing, tenant_id=org)
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
    with pytest.raises(ValueError, match="which service"):
        type("Bad3", (EventData,), {"event_type": "pytake.a.b.c.v1", "topic": "pytake.a.b"})


def test_event_times_are_utc_and_naive_times_are_refused():
    org, thing = uuid.uuid4(), uuid.uuid4()
    later = datetime(2026, 12, 5, 12, 0, tzinfo=timezone(timedelta(hours=-3)))
    moved = Moved(thing_id=thing, organization_id=org, at=later, until=later)
    assert moved.at == later and moved.at.tzinfo is UTC and moved.at.hour == 15
    assert moved.until is not None and moved.until.tzinfo is UTC
    with pytest.raises(ValidationError, match="UTC offset"):
        Moved(thing_id=thing, organization_id=org, at=datetime(2026, 12, 5, 12, 0))
    with pytest.raises(ValidationError, match="UTC offset"):
        MovedFacts.model_validate({"organization_id": str(org), "at": "2026-12-05T12:00:00"})
    read = MovedFacts.model_validate(
        {"organization_id": str(org), "at": "2026-12-05T12:00:00+01:00"}
    )
    assert read.at == datetime(2026, 12, 5, 11, 0, tzinfo=UTC) and read.at.tzinfo is UTC


def test_envelope_time_is_utc_and_a_naive_one_means_utc():
    org = uuid.uuid4()
    base = {"source": "pytake/x", "type": Pinged.event_type, "subject": "s", "tenantid": str(org)}
    aware = CloudEvent.model_validate({**base, "time": "2026-12-05T12:00:00+02:00", "data": {}})
    naive = CloudEvent.model_validate({**base, "time": "2026-12-05T10:00:00", "data": {}})
    assert aware.time == naive.time and aware.time.tzinfo is UTC and naive.time.tzinfo is UTC


def test_emitting_derives_source_and_tenant_from_the_payload():
    org, thing = uuid.uuid4(), uuid.uuid4()
    moved = Moved(thing_id=thing, organization_id=org, at=datetime.now(UTC))
    ev = CloudEvent.of(moved, subject=thing)
    assert ev.source == "pytake/testing" and ev.tenantid == str(org)
    assert CloudEvent.of(moved, subject=thing, tenant_id=str(org).upper()).tenantid
    with pytest.raises(TenantMismatch):
        CloudEvent.of(moved, subject=thing, tenant_id=uuid.uuid4())
    with pytest.raises(ValueError, match="names no organization"):
        CloudEvent.of(Pinged(thing_id=thing), subject=thing)


def test_data_of_another_organization_is_refused_when_read():
    org, other, thing = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ev = CloudEvent.of(
        Moved(thing_id=thing, organization_id=org, at=datetime.now(UTC)), subject=thing
    )
    assert ev.parse_data(MovedFacts).organization_id == org
    assert ev.parse_data(Moved).thing_id == thing
    forged = ev.model_copy(update={"tenantid": str(other)})
    for model in (MovedFacts, Moved):
        with pytest.raises(ValidationError, match="in an event of tenant"):
            forged.parse_data(model)


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
