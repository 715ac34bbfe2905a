"""Contact rules on their own: phone normalisation, names, attributes, search terms."""

import pytest

from pytake_common.errors import InvalidInput
from pytake_contacts.domain import (
    AttributeDefinition,
    InvalidAttributeValue,
    InvalidPhone,
    UnknownAttribute,
    clean_email,
    clean_name,
    merge_attributes,
    normalize_phone,
    parse_attribute_text,
    phone_from_wa_id,
    search_digits,
    wa_id_for_phone,
)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+55 11 91234-5678", "+5511912345678"),
        ("5511912345678", "+5511912345678"),
        ("  +1 (415) 555-2671 ", "+14155552671"),
        ("0044 20 7946 0958", "+442079460958"),  # international prefix typed as 00
        ("+44.20.7946.0958", "+442079460958"),
    ],
)
def test_a_phone_in_any_international_spelling_becomes_e164(raw: str, e164: str) -> None:
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "call me", "+55 11 9", "+999 1234567", "1" * 41, "+55 11 91234-5678 ext 3"],
)
def test_what_is_not_a_valid_phone_is_refused_with_the_field(raw: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        normalize_phone(raw)
    assert caught.value.status == 422
    assert caught.value.extra.get("field") == "phone"


def test_wa_ids_map_to_phones_and_back() -> None:
    assert phone_from_wa_id("5511912345678") == "+5511912345678"
    assert wa_id_for_phone("+5511912345678") == "5511912345678"
    # business-scoped ids, usernames and impossible numbers stay unknown
    for wa_id in (None, "", "BSUID.abc", "12", "0000000000000000000"):
        assert phone_from_wa_id(wa_id) is None


def test_names_are_trimmed_and_blank_names_are_none() -> None:
    assert clean_name("  Ana \n  Souza ") == "Ana Souza"
    assert clean_name("   ") is None
    assert clean_name(None) is None
    assert len(clean_name("x" * 1000) or "") < 1000


def test_emails_are_lower_cased_and_checked() -> None:
    assert clean_email(" Ana@Example.COM ") == "ana@example.com"
    with pytest.raises(InvalidInput):
        clean_email("not an address")


DEFINITIONS = {
    "plan": AttributeDefinition("plan", "list", ["free", "pro"]),
    "age": AttributeDefinition("age", "number"),
    "vip": AttributeDefinition("vip", "boolean"),
    "birthday": AttributeDefinition("birthday", "date"),
    "site": AttributeDefinition("site", "link"),
    "note": AttributeDefinition("note", "text"),
}


def test_merging_attributes_applies_changes_and_none_removes() -> None:
    current = {"plan": "free", "age": 30, "note": "hello"}
    merged = merge_attributes(DEFINITIONS, current, {"plan": "pro", "note": None, "vip": True})
    assert merged == {"plan": "pro", "age": 30, "vip": True}
    assert current == {"plan": "free", "age": 30, "note": "hello"}  # not mutated


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("plan", "enterprise"),
        ("age", "30"),
        ("age", True),  # a bool is not a number
        ("vip", "yes"),
        ("birthday", "31/12/1990"),
        ("site", "javascript:alert(1)"),
        ("note", "x" * 100_000),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_attribute(key: str, value: object) -> None:
    with pytest.raises(InvalidAttributeValue) as caught:
        merge_attributes(DEFINITIONS, {}, {key: value})
    assert caught.value.extra.get("attribute") == key


def test_an_undefined_attribute_is_refused() -> None:
    with pytest.raises(UnknownAttribute):
        merge_attributes(DEFINITIONS, {}, {"shoe_size": 42})


def test_dates_are_stored_in_iso_form() -> None:
    assert merge_attributes(DEFINITIONS, {}, {"birthday": "1990-12-31"}) == {
        "birthday": "1990-12-31"
    }


@pytest.mark.parametrize(
    ("definition", "cell", "value"),
    [
        (DEFINITIONS["age"], " 42 ", 42),
        (DEFINITIONS["age"], "4.5", 4.5),
        (DEFINITIONS["age"], "4.0", 4.0),
        (DEFINITIONS["vip"], "Yes", True),
        (DEFINITIONS["vip"], "0", False),
        (DEFINITIONS["note"], "", None),
        (DEFINITIONS["age"], "many", "many"),  # left for merge_attributes to refuse
    ],
)
def test_csv_cells_become_typed_values(
    definition: AttributeDefinition, cell: str, value: object
) -> None:
    parsed = parse_attribute_text(definition, cell)
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize(
    ("q", "digits"),
    [("+55 (11) 9123", "55119123"), ("912", "912"), ("12", None), ("ana", None), ("a1b2c3", None)],
)
def test_search_terms_that_look_like_phones_search_by_digits(q: str, digits: str | None) -> None:
    assert search_digits(q) == digits
