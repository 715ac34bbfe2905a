"""Assignment: local replicas of users and departments, manual assign, round-robin with a cap."""

import uuid
from datetime import timedelta

import pytest

from .helpers import Customer, deliver, department, emitted, opened, platform_event, user_created


@pytest.fixture
def org():
    return uuid.uuid4()


def assign(client, tokens, org, conv_id, role="agent", **body):
    return client.post(
        f"/v1/conversations/{conv_id}/assign",
        json=body,
        headers=tokens.headers(organization_id=org, role=role),
    )


async def test_manual_assignment_checks_the_replicas(app, client, tokens, org):
    agent, viewer, dept = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    created = user_created(org, agent)
    await deliver(app, created)
    await deliver(app, created)  # same event twice
    await deliver(app, user_created(org, viewer, role="viewer"))
    await deliver(app, department(org, dept, [agent], strategy="manual"))
    conv = await opened(app, org)

    r = await assign(client, tokens, org, conv["id"], assignee_id=str(viewer))
    assert (r.status_code, r.json()["code"]) == (422, "invalid_assignee")
    r = await assign(client, tokens, org, conv["id"], department_id=str(uuid.uuid4()))
    assert (r.status_code, r.json()["code"]) == (422, "invalid_department")
    r = await assign(
        client, tokens, org, conv["id"], assignee_id=str(agent), department_id=str(dept)
    )
    assert r.status_code == 200, r.text
    assert (r.json()["assignee_id"], r.json()["department_id"]) == (str(agent), str(dept))
    [event] = await emitted(app, org, "conversation.assigned.v1")
    assert event["data"]["assignee_id"] == str(agent)
    assert event["data"]["department_id"] == str(dept)
    assert event["data"]["assigned_by"] is not None

    # a deactivated user can no longer be given conversations; null unassigns
    await deliver(
        app,
        platform_event("pytake.auth.user.deactivated.v1", org, {"user_id": str(agent)}),
    )
    r = await assign(client, tokens, org, conv["id"], assignee_id=None)
    assert (r.status_code, r.json()["assignee_id"], r.json()["department_id"]) == (
        200,
        None,
        str(dept),
    )
    r = await assign(client, tokens, org, conv["id"], assignee_id=str(agent))
    assert r.status_code == 422
    assert (
        await assign(client, tokens, org, conv["id"], role="viewer", assignee_id=None)
    ).status_code == 403
    assert (
        await assign(client, tokens, uuid.uuid4(), conv["id"], assignee_id=None)
    ).status_code == 404


async def test_round_robin_respects_the_cap_and_the_unassigned_queue(app, client, tokens, org):
    a, b = uuid.uuid4(), uuid.uuid4()
    for user in (a, b):
        await deliver(app, user_created(org, user))
    dept = uuid.uuid4()
    await deliver(app, department(org, dept, [a, b], cap=1, is_default=True))
    convs = [await opened(app, org) for _ in range(3)]
    assert [c["assignee_id"] for c in convs] == [a, b, None]
    headers = tokens.headers(organization_id=org, role="viewer")
    listed = (await client.get("/v1/conversations", headers=headers)).json()["items"]
    by_id = {i["id"]: i for i in listed}
    got = [by_id[str(c["id"])]["assignee_id"] for c in convs]
    assert got == [str(a), str(b), None]  # the third waits: both agents at their cap
    assert {by_id[str(c["id"])]["department_id"] for c in convs} == {str(dept)}
    unassigned = (
        await client.get("/v1/conversations", params={"unassigned": "true"}, headers=headers)
    ).json()["items"]
    assert [i["id"] for i in unassigned] == [str(convs[2]["id"])]
    mine = (
        await client.get("/v1/conversations", params={"assignee_id": str(a)}, headers=headers)
    ).json()["items"]
    assert [i["id"] for i in mine] == [str(convs[0]["id"])]
    auto = await emitted(app, org, "conversation.assigned.v1")
    assert [e["data"]["assigned_by"] for e in auto] == [None, None, None]


async def test_number_mapping_wins_and_deleted_departments_route_nothing(app, tokens, org):
    agent = uuid.uuid4()
    await deliver(app, user_created(org, agent))
    default, sales = uuid.uuid4(), uuid.uuid4()
    customer = Customer(org)
    await deliver(app, department(org, default, [agent], is_default=True))
    await deliver(
        app,
        department(org, sales, [agent], number_ids=[str(customer.number_id)]),
    )
    conv = await opened(app, org, customer)
    [event] = await emitted(app, org, "conversation.assigned.v1")
    assert event["data"]["department_id"] == str(sales)
    assert event["data"]["conversation_id"] == str(conv["id"])
    for dept in (default, sales):
        gone = platform_event(
            "pytake.tenants.department.deleted.v1", org, {"department_id": str(dept)}
        )
        await deliver(app, gone)
        late = department(org, dept, [agent], event="updated", is_default=True)
        late.time = gone.time - timedelta(seconds=1)  # older than the deletion: ignored
        await deliver(app, late)
    await opened(app, org)
    assert len(await emitted(app, org, "conversation.assigned.v1")) == 1
