"""Rules of starting a conversation, without a database."""

import pytest

from pytake_common.errors import DomainError
from pytake_conversations.outreach import (
    ConsentRequired,
    Contact,
    NoRecipient,
    Parameter,
    Template,
    TemplateNotApproved,
    TemplateParameterCount,
    TemplateParameterMissing,
    UnknownPlaceholder,
    check_contact,
    check_number,
    check_recipient,
    check_template,
    components,
    rendered_body,
)

MARIA = Contact(
    name="Maria",
    phone="+5511987654321",
    attributes={"city": "Recife", "vip": True, "tags": ["a", "b"], "empty": "  "},
    marketing_opt_in=False,
)


def template(body: str, header: str | None = None, **over: object) -> Template:
    parts: list[dict[str, object]] = [{"type": "BODY", "text": body}]
    if header is not None:
        parts.insert(0, {"type": "HEADER", "format": "TEXT", "text": header})
    values: dict[str, object] = {
        "name": "t",
        "language": "en_US",
        "category": "UTILITY",
        "status": "APPROVED",
        "components": parts,
    } | over
    return Template(**values)  # type: ignore[arg-type]


def test_positional_variables_take_the_parameters_in_order_and_mix_literal_text() -> None:
    t = template("Hi {{1}} from {{2}}, {{1}}!", header="For {{1}}")
    out, values = components(
        t,
        [Parameter("{{contact.name}}"), Parameter("sunny {{ contact.attributes.city }}")],
        [Parameter("{{contact.phone}}")],
        MARIA,
    )
    assert out == [
        {"type": "header", "parameters": [{"type": "text", "text": "+5511987654321"}]},
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "Maria"},
                {"type": "text", "text": "sunny Recife"},
            ],
        },
    ]
    assert rendered_body(t, values) == "Hi Maria from sunny Recife, Maria!"


def test_named_variables_carry_their_names_and_values_are_written_as_text() -> None:
    t = template("Dear {{first_name}}, vip={{vip}} tags={{tags}}")
    out, _ = components(
        t,
        [
            Parameter("{{contact.name}}"),
            Parameter("{{contact.attributes.vip}}"),
            Parameter("{{contact.attributes.tags}}"),
        ],
        [],
        MARIA,
    )
    assert [(p["parameter_name"], p["text"]) for p in out[0]["parameters"]] == [
        ("first_name", "Maria"),
        ("vip", "true"),
        ("tags", "a, b"),
    ]


@pytest.mark.parametrize(
    "value", ["{{contact.attributes.missing}}", "{{contact.attributes.empty}}", "   "]
)
def test_a_value_the_contact_lacks_refuses_unless_a_default_is_given(value: str) -> None:
    t = template("Hi {{1}}")
    with pytest.raises(TemplateParameterMissing) as refused:
        components(t, [Parameter(value)], [], MARIA)
    assert refused.value.extra["parameter"] == "body.1"
    with pytest.raises(TemplateParameterMissing):
        components(t, [Parameter(value, default=" ")], [], MARIA)
    out, _ = components(t, [Parameter(value, default="friend")], [], MARIA)
    assert out[0]["parameters"][0]["text"] == "friend"


def test_unknown_placeholders_are_refused() -> None:
    with pytest.raises(UnknownPlaceholder):
        components(template("Hi {{1}}"), [Parameter("{{agent.name}}")], [], MARIA)


def test_only_approved_templates_and_marketing_only_with_consent() -> None:
    with pytest.raises(TemplateNotApproved):
        check_template(template("x", status="PENDING"), MARIA)
    with pytest.raises(ConsentRequired):
        check_template(template("x", category="MARKETING"), MARIA)
    consenting = Contact(name="M", phone=None, attributes={}, marketing_opt_in=True)
    check_template(template("x", category="marketing"), consenting)
    check_template(template("x", category="UTILITY"), MARIA)


def test_url_buttons_with_a_variable_take_a_parameter_each() -> None:
    t = template("Your order {{1}}")
    buttons = {
        "type": "BUTTONS",
        "buttons": [
            {"type": "QUICK_REPLY", "text": "Thanks"},
            {"type": "URL", "text": "Track", "url": "https://shop.example/track/{{1}}"},
            {"type": "URL", "text": "Shop", "url": "https://shop.example/"},
        ],
    }
    t = Template(t.name, t.language, t.category, t.status, [*t.components, buttons])
    order = [Parameter("{{contact.attributes.city}}")]
    with pytest.raises(TemplateParameterCount) as refused:
        components(t, order, [], MARIA)
    assert (refused.value.extra["component"], refused.value.extra["expected"]) == ("button", 1)
    out, values = components(t, order, [], MARIA, [Parameter("{{contact.phone}}")])
    assert out[-1] == {
        "type": "button",
        "sub_type": "url",
        "index": "1",
        "parameters": [{"type": "text", "text": "+5511987654321"}],
    }
    assert values["button.1"] == "+5511987654321"


# --- the number and the contact: the one rule starting.py and campaign_sends.py apply ----

NUMBER = {"status": "connected", "phone_number_id": "1111"}
CONTACT = {"erased_at": None, "blocked": False}


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (None, "not_found"),
        ({**NUMBER, "status": "removed"}, "not_found"),
        ({**NUMBER, "phone_number_id": None}, "not_found"),
        ({**NUMBER, "status": "disconnected"}, "number_disconnected"),
    ],
)
def test_a_number_that_cannot_send_is_refused(number, code):
    with pytest.raises(DomainError) as refused:
        check_number(number)
    assert refused.value.code == code


@pytest.mark.parametrize(
    ("contact", "code"),
    [
        (None, "not_found"),
        ({**CONTACT, "erased_at": "2026-01-01"}, "contact_erased"),
        ({**CONTACT, "blocked": True}, "contact_blocked"),
        # erased wins over blocked (the order the checks were always made in)
        ({**CONTACT, "erased_at": "2026-01-01", "blocked": True}, "contact_erased"),
    ],
)
def test_a_contact_that_cannot_be_written_to_is_refused(contact, code):
    with pytest.raises(DomainError) as refused:
        check_contact(contact)
    assert refused.value.code == code


def test_sendable_rows_pass_and_a_recipient_needs_a_whatsapp_id():
    assert check_number(NUMBER) is NUMBER and check_contact(CONTACT) is CONTACT
    check_recipient("5511", None)
    check_recipient(None, "BR.1")
    with pytest.raises(NoRecipient):
        check_recipient(None, None)
