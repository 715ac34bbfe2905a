"""Sign up, then read the organization at once, through the gateway (no 404, no polling).

The organization is created by tenants from auth's ``user.registered`` event (outbox,
broker, consumer); tenants' ``/me`` reads wait for it, so the client needs no retry.
"""

import time


async def _register(loop, name: str) -> dict:
    r = await loop.gw.post(
        "/v1/auth/register",
        json={
            "email": f"signup{time.time_ns()}@example.com",
            "password": "correct horse battery staple",
            "full_name": "Sid Signup",
            "organization_name": name,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_new_organization_is_readable_right_after_registering(loop):
    # A first sign-up the usual way (it polls): the stack's consumers have joined.
    await loop.register("Warm Up")
    for n in range(3):
        body = await _register(loop, f"Right Away {n}")
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        me = await loop.gw.get("/v1/organizations/me", headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["id"] == body["user"]["organization_id"]
        assert me.json()["name"] == f"Right Away {n}"
        usage = await loop.gw.get("/v1/organizations/me/usage", headers=headers)
        assert usage.status_code == 200, usage.text
