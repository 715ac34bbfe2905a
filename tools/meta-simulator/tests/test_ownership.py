"""A number belongs to its access token: the token reads the number and its WABA's list."""

from typing import Any

import httpx

from pytake_meta_simulator.testing import provision


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()["error"]
    return body


async def test_the_owner_reads_its_number_and_its_wabas_list(sim: httpx.AsyncClient) -> None:
    await provision(sim, "111", "W1", "owner-token")
    await provision(sim, "112", "W1", "owner-token")
    await provision(sim, "211", "W2", "other-token")
    r = await sim.get(
        "/v21.0/111",
        params={"fields": "id,display_phone_number,verified_name,quality_rating"},
        headers=bearer("owner-token"),
    )
    assert r.status_code == 200
    assert r.json()["id"] == "111" and r.json()["quality_rating"] == "GREEN"
    r = await sim.get("/v21.0/W1/phone_numbers", headers=bearer("owner-token"))
    assert r.status_code == 200
    assert [n["id"] for n in r.json()["data"]] == ["111", "112"]


async def test_other_tokens_are_refused_as_on_meta(sim: httpx.AsyncClient) -> None:
    await provision(sim, "111", "W1", "owner-token")
    await provision(sim, "211", "W2", "other-token")
    for path in ("/v21.0/111", "/v21.0/W1/phone_numbers"):
        r = await sim.get(path, headers=bearer("other-token"))  # another business's token
        assert (r.status_code, error(r)["code"]) == (400, 100), path
        r = await sim.get(path, headers=bearer("never-issued"))
        assert (r.status_code, error(r)["code"]) == (401, 190), path
    r = await sim.get("/v21.0/W9/phone_numbers", headers=bearer("owner-token"))
    assert (r.status_code, error(r)["code"]) == (400, 100)
