"""The service layer's pure rules: what a create or patch body stores, tag names and
colours, list attributes' values."""

import pytest

from pytake_common.errors import InvalidInput
from pytake_contacts.book import clean_fields
from pytake_contacts.domain import InvalidPhone
from pytake_contacts.schemas import AttributeDefinitionIn, ContactCreate, ContactPatch, TagPatch
from pytake_contacts.tags import allowed_values, clean_tag_name, tag_changes


def test_only_the_fields_sent_are_cleaned_and_null_clears():
    body = ContactPatch.model_validate(
        {"name": "  Ana   Souza ", "email": "Ana@Example.COM", "company": "  ", "notes": None}
    )
    assert clean_fields(body) == {
        "name": "Ana Souza",
        "email": "ana@example.com",
        "company": None,
        "notes": None,
    }
    assert clean_fields(ContactPatch()) == {}


def test_a_phone_is_stored_in_e164():
    body = ContactCreate(phone="+55 11 91234-5678")
    assert clean_fields(body) == {"phone": "+5511912345678"}
    with pytest.raises(InvalidPhone):
        clean_fields(ContactCreate(phone="12"))


def test_a_blank_name_refuses_but_null_clears():
    with pytest.raises(InvalidInput):
        clean_fields(ContactPatch(name="   "))
    assert clean_fields(ContactPatch(name=None)) == {"name": None}


def test_tag_names_fold_blanks_and_a_blank_one_refuses():
    assert clean_tag_name("  vip   customers ") == "vip customers"
    with pytest.raises(InvalidInput):
        clean_tag_name("   ")
    assert tag_changes(TagPatch(name=" a  b ", color="#AbCdEf")) == {
        "name": "a b",
        "color": "#ABCDEF",
    }
    assert tag_changes(TagPatch()) == {}


def test_list_attributes_need_values_and_only_they_take_them():
    def body(kind: str, values: list[str] | None) -> AttributeDefinitionIn:
        return AttributeDefinitionIn(key="plan", label="Plan", type=kind, allowed_values=values)  # type: ignore[arg-type]

    assert allowed_values(body("list", [" gold ", "silver", "gold", " "])) == ["gold", "silver"]
    assert allowed_values(body("text", None)) is None
    for refused in (body("list", None), body("list", ["  "]), body("text", ["a"])):
        with pytest.raises(InvalidInput):
            allowed_values(refused)
