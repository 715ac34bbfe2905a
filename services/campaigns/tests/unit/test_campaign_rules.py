"""Pure rules: lifecycle, status order, tiers, pacing arithmetic, cost, template mapping,
and the audience's SQL."""

import uuid
from decimal import Decimal

import pytest
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql

from pytake_campaigns import rules
from pytake_campaigns.audience import Audience, matched
from pytake_common.errors import UnprocessableState

BODY = [{"type": "BODY", "text": "Hi {{1}}, {{2}} and {{1}} again"}]


@pytest.mark.parametrize(
    ("action", "ok", "refused"),
    [
        ("edit", {"draft"}, {"scheduled", "running", "paused", "completed", "cancelled"}),
        ("start", {"draft"}, {"running", "completed"}),
        ("pause", {"running", "scheduled"}, {"draft", "paused", "cancelled"}),
        ("resume", {"paused"}, {"running", "draft"}),
        ("cancel", {"running", "paused", "scheduled"}, {"draft", "completed", "cancelled"}),
        ("delete", {"draft", "completed", "cancelled"}, {"running", "paused", "scheduled"}),
    ],
)
def test_lifecycle(action, ok, refused):
    for status in ok:
        rules.check_action(action, status)
    for status in refused:
        with pytest.raises(UnprocessableState) as raised:
            rules.check_action(action, status)
        expected = "campaign_not_editable" if action == "edit" else "invalid_campaign_state"
        assert raised.value.code == expected and raised.value.status == 409


def test_statuses_never_move_backwards():
    assert rules.moves_forward("queued", "dispatched")
    assert rules.moves_forward("accepted", "delivered")  # "sent" may never arrive
    assert not rules.moves_forward("delivered", "sent")
    assert not rules.moves_forward("read", "delivered")
    assert rules.moves_forward("delivered", "failed")  # multi-device: failed after delivered
    assert not rules.moves_forward("read", "failed")
    assert not rules.moves_forward("failed", "read")
    assert rules.moves_forward("read", "replied")
    assert not rules.moves_forward("failed", "replied")
    assert rules.moves_forward("queued", "cancelled")
    assert not rules.moves_forward("dispatched", "cancelled")
    assert not rules.moves_forward("cancelled", "dispatched")
    # an unconfirmed send (its outcome never came) still takes a status that comes late
    assert rules.moves_forward("accepted", "unconfirmed")
    assert not rules.moves_forward("unconfirmed", "accepted")
    assert not rules.moves_forward("sent", "unconfirmed")
    assert rules.moves_forward("unconfirmed", "delivered")
    assert rules.moves_forward("unconfirmed", "failed")
    assert rules.forward_from("sent") == ("queued", "dispatched", "accepted", "unconfirmed")


def test_tiers_unknown_is_the_lowest():
    assert rules.tier_limit("TIER_2K") == 2_000
    assert rules.tier_limit("tier_100k") == 100_000
    assert rules.tier_limit("TIER_UNLIMITED") is None
    assert rules.tier_limit(None) == rules.tier_limit("TIER_NEW") == 250


def test_send_rate():
    assert rules.send_rate(None, 80) == 80
    assert rules.send_rate(20, 80) == 20
    assert rules.send_rate(500, 80) == 80


@pytest.mark.parametrize(
    ("args", "release", "credit"),
    [
        # rate, credit, elapsed, in flight, window s, queued, allowance
        ((80, 0.0, 0.1, 0, 1.0, 1000, None), 8, 0.0),
        ((80, 0.0, 5.0, 0, 1.0, 1000, None), 80, 0.0),  # at most a second's worth saved
        ((80, 0.0, 1.0, 75, 1.0, 1000, None), 5, 75.0),  # the in-flight window
        ((80, 0.0, 1.0, 0, 1.0, 3, None), 3, 77.0),  # fewer queued
        ((80, 0.0, 1.0, 0, 1.0, 1000, 10), 10, 70.0),  # the messaging limit's room
        ((80, 0.0, 1.0, 0, 1.0, 1000, -4), 0, 80.0),
        ((5, 0.5, 0.15, 0, 1.0, 100, None), 1, 0.25),  # fractions carry over
        ((80, 0.0, -1.0, 0, 1.0, 1000, None), 0, 0.0),  # a clock step back gives nothing
    ],
)
def test_pace(args, release, credit):
    got = rules.pace(*args)
    assert got.release == release
    assert got.credit == pytest.approx(credit)


def test_sends_never_pass_the_rate_over_any_second():
    """Ticking every 100 ms with acknowledgements at once: 80 per second, never more."""
    rate, credit, released = 80, 0.0, []
    for _ in range(50):
        step = rules.pace(rate, credit, 0.1, 0, 1.0, 10**6, None)
        credit = step.credit
        released.append(step.release)
    windows = [sum(released[i : i + 10]) for i in range(len(released) - 9)]
    assert max(windows) <= rate and min(windows) >= rate - 1


def test_cost():
    rates = {"marketing": 0.0625, "utility": 0.02}
    assert rules.cost_of("MARKETING", True, rates) == Decimal("0.0625")
    assert rules.cost_of("utility", False, rates) == 0
    assert rules.cost_of("authentication", True, rates) == 0
    assert rules.cost_of(None, True, rates) == 0


def test_template_mapping():
    spec = {"parameters": ["{{contact.name}}", {"value": "x {{contact.attributes.city}}"}]}
    rules.check_template("APPROVED", BODY, spec)
    with pytest.raises(rules.TemplateNotApproved):
        rules.check_template("PAUSED", BODY, spec)
    with pytest.raises(rules.TemplateParameterCount):
        rules.check_template("APPROVED", BODY, {"parameters": ["one"]})
    with pytest.raises(rules.UnknownPlaceholder):
        rules.check_template("APPROVED", BODY, {"parameters": ["{{contact.email}}", "b"]})
    buttons = [
        *BODY,
        {"type": "HEADER", "text": "Dear {{name}}"},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://x/{{1}}"}]},
    ]
    assert rules.expected_parameters(buttons) == {
        "parameters": 2,
        "header_parameters": 1,
        "button_parameters": 1,
    }


def _sql(audience: Audience) -> str:
    compiled = matched(uuid.uuid4(), audience).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": False}
    )
    return str(compiled)


def test_audience_sql():
    a, b = uuid.uuid4(), uuid.uuid4()
    tagged = _sql(Audience(tags_any=[a]))
    # the tag test is correlated with the contact of the outer query, not a cross join
    assert "FROM contact_tag_replicas \nWHERE" in tagged
    assert _sql(Audience(tags_all=[a, b])).count("EXISTS") == 2
    by_ids = _sql(Audience(tags_any=[a], contact_ids=[b]))
    assert " OR contact_replicas.id = any(" in by_ids
    only_ids = _sql(Audience(contact_ids=[b]))
    assert "EXISTS" not in only_ids and only_ids.endswith(
        "contact_replicas.id = any(%(param_1)s::UUID[])"
    )
    everyone = _sql(Audience(all_contacts=True))
    assert everyone.endswith(
        "WHERE contact_replicas.organization_id = %(organization_id_1)s::UUID AND true"
    )
    filtered = _sql(Audience(filters={"q": "ana 9876", "unassigned": True, "opted_in": True}))
    assert "ILIKE" in filtered.upper() and "regexp_replace" in filtered
    assert "assignee_id IS NULL" in filtered and "marketing_opt_in IS true" in filtered


def test_an_audience_must_say_who():
    with pytest.raises(ValidationError):
        Audience()
    with pytest.raises(ValidationError):
        Audience(filters={})
    Audience(filters={"opted_in": True})
