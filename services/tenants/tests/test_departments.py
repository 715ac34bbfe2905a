import uuid

from .helpers import again, deliver, emitted, new_org, user_event


async def agent(app, settings, org) -> uuid.UUID:
    user = uuid.uuid4()
    await deliver(
        app, settings, user_event("created", org, user, full_name="A", role="agent", is_active=True)
    )
    return user


async def upgrade(app, org, plan="professional"):
    from pytake_tenants.organizations import change_plan

    async with app.state.db.transaction(organization_id=org) as s:
        await change_plan(s, org, plan, None, None)


async def test_department_lifecycle_with_members_routing_and_events(app, settings, client, tokens):
    org, admin = await new_org(app, settings)
    await upgrade(app, org)
    bia = await agent(app, settings, org)
    headers = tokens.headers(organization_id=org)
    r = await client.post(
        "/v1/departments",
        json={
            "name": "  Sales ",
            "member_ids": [str(admin), str(bia), str(bia)],
            "routing": {"strategy": "round_robin", "max_open_per_agent": 5},
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    dept = r.json()
    assert r.headers["location"] == f"/v1/departments/{dept['id']}"
    assert dept["name"] == "Sales"
    assert sorted(dept["member_ids"]) == sorted([str(admin), str(bia)])
    assert dept["routing"] == {"strategy": "round_robin", "max_open_per_agent": 5}

    r = await client.post("/v1/departments", json={"name": "sales"}, headers=headers)
    assert r.status_code == 409

    r = await client.patch(
        f"/v1/departments/{dept['id']}",
        json={"member_ids": [str(bia)], "routing": {"strategy": "manual"}},
        headers=headers,
    )
    assert r.status_code == 200
    assert r.json()["member_ids"] == [str(bia)]
    assert r.json()["routing"] == {"strategy": "manual", "max_open_per_agent": None}

    listed = await client.get(
        "/v1/departments", headers=tokens.headers(organization_id=org, role="viewer")
    )
    assert [d["id"] for d in listed.json()["items"]] == [dept["id"]]

    # a deleted user leaves every department
    await deliver(app, settings, user_event("deleted", org, bia))
    r = await client.get(f"/v1/departments/{dept['id']}", headers=headers)
    assert r.json()["member_ids"] == []

    r = await client.delete(f"/v1/departments/{dept['id']}", headers=headers)
    assert r.status_code == 204
    r = await client.get(f"/v1/departments/{dept['id']}", headers=headers)
    assert r.status_code == 404

    events = [e for e in await emitted(app, "pytake.tenants.department.")]
    assert [e["type"].rsplit(".", 2)[1] for e in events] == [
        "created",
        "updated",
        "updated",
        "deleted",
    ]
    assert events[0]["subject"] == dept["id"]
    assert events[0]["data"] == {
        "department_id": dept["id"],
        "organization_id": str(org),
        "name": "Sales",
        "member_ids": dept["member_ids"],
        "routing": {"strategy": "round_robin", "max_open_per_agent": 5},
    }
    assert events[2]["data"]["member_ids"] == []
    assert events[3]["data"] == {"department_id": dept["id"], "organization_id": str(org)}


async def test_members_must_be_live_users_of_the_same_organization(app, settings, client, tokens):
    org, _ = await new_org(app, settings, "Mine")
    _other, outsider = await new_org(app, settings, "Theirs")
    gone = await agent(app, settings, org)
    await deliver(app, settings, user_event("deleted", org, gone))
    headers = tokens.headers(organization_id=org)
    for member in (outsider, uuid.uuid4(), gone):
        r = await client.post(
            "/v1/departments",
            json={"name": "Support", "member_ids": [str(member)]},
            headers=headers,
        )
        assert r.status_code == 422
        assert r.json()["unknown"] == [str(member)]
    assert await emitted(app, "pytake.tenants.department.") == []


async def test_the_plans_department_limit_is_enforced(app, settings, client, tokens):
    org, _ = await new_org(app, settings)  # free plan: one department
    headers = tokens.headers(organization_id=org)
    r = await client.post("/v1/departments", json={"name": "Sales"}, headers=headers)
    assert r.status_code == 201
    r = await client.post("/v1/departments", json={"name": "Support"}, headers=headers)
    assert r.status_code == 402
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "plan_limit_exceeded"
    assert (problem["limit"], problem["allowed"], problem["used"]) == ("departments", 1, 1)
    await upgrade(app, org, "starter")
    r = await client.post("/v1/departments", json={"name": "Support"}, headers=headers)
    assert r.status_code == 201


async def test_idempotency_key_replays_the_first_answer(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    headers = {**tokens.headers(organization_id=org), "Idempotency-Key": "k-1"}
    first = await client.post("/v1/departments", json={"name": "Sales"}, headers=headers)
    second = await client.post("/v1/departments", json={"name": "Sales"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(await emitted(app, "pytake.tenants.department.")) == 1
    other_body = await client.post("/v1/departments", json={"name": "Other"}, headers=headers)
    assert other_body.status_code == 422


async def test_other_organizations_departments_are_not_found(app, settings, client, tokens):
    org, _ = await new_org(app, settings, "Mine")
    other, _ = await new_org(app, settings, "Theirs")
    r = await client.post(
        "/v1/departments", json={"name": "Theirs"}, headers=tokens.headers(organization_id=other)
    )
    theirs = r.json()["id"]
    mine = tokens.headers(organization_id=org)
    assert (await client.get(f"/v1/departments/{theirs}", headers=mine)).status_code == 404
    r = await client.patch(f"/v1/departments/{theirs}", json={"name": "X"}, headers=mine)
    assert r.status_code == 404
    assert (await client.delete(f"/v1/departments/{theirs}", headers=mine)).status_code == 404
    assert (await client.get("/v1/departments", headers=mine)).json()["items"] == []


async def test_only_admins_write_departments(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    for role in ("agent", "viewer"):
        r = await client.post(
            "/v1/departments",
            json={"name": "Sales"},
            headers=tokens.headers(organization_id=org, role=role),
        )
        assert r.status_code == 403


async def test_the_users_replica_ignores_duplicates(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    user = uuid.uuid4()
    created = user_event("created", org, user, full_name="Bia", role="agent", is_active=True)
    await deliver(app, settings, created, created, again(created))
    r = await client.post(
        "/v1/departments",
        json={"name": "Sales", "member_ids": [str(user)]},
        headers=tokens.headers(organization_id=org),
    )
    assert r.status_code == 201 and r.json()["member_ids"] == [str(user)]
