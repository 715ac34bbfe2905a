"""Sessions end to end through the gateway: rotation, reuse detection, revocation in < 2 s."""

import asyncio
import time


async def _register(loop):
    email = f"s{time.time_ns()}@example.com"
    r = await loop.gw.post(
        "/v1/auth/register",
        json={
            "email": email,
            "password": "correct horse battery staple",
            "full_name": "Sam Session",
            "organization_name": "Session Org",
        },
    )
    assert r.status_code == 201
    return r.json()


async def _refused_within(loop, token: str, seconds: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        r = await loop.gw.get("/v1/conversations", headers={"Authorization": f"Bearer {token}"})
        if r.status_code == 401:
            assert r.headers["content-type"].startswith("application/problem+json")
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"token still accepted {seconds}s after its session was revoked")


async def test_logout_revokes_the_access_token_everywhere_within_two_seconds(loop):
    body = await _register(loop)
    token = body["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await loop.gw.get("/v1/conversations", headers=headers)).status_code == 200
    r = await loop.gw.post("/v1/auth/logout", headers=headers)
    assert r.status_code == 204
    assert await _refused_within(loop, token, 2.0) < 2.0


async def test_refresh_rotation_and_reuse_detection_through_the_gateway(loop):
    body = await _register(loop)
    first_refresh = body["refresh_token"]
    r = await loop.gw.post("/v1/auth/refresh", json={"refresh_token": first_refresh})
    assert r.status_code == 200
    rotated = r.json()
    assert rotated["refresh_token"] != first_refresh
    # Presenting the already-used refresh token again revokes the whole session...
    r = await loop.gw.post("/v1/auth/refresh", json={"refresh_token": first_refresh})
    assert r.status_code == 401
    # ...so the rotated refresh token is dead too, and so is its access token.
    r = await loop.gw.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert r.status_code == 401
    await _refused_within(loop, rotated["access_token"], 2.0)
