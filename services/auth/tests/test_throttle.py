import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from pytake_auth.app import create_app
from pytake_auth.tables import throttle_buckets
from pytake_auth.throttle import (
    Rule,
    Throttle,
    Throttled,
    _retry_after,
    ceiling_group,
    purge_expired,
    throttle_source,
)
from pytake_common.peers import is_in

TIGHT = {
    "throttle_login_per_address": (3, 60),
    "throttle_register_per_address": (2, 3600),
    "throttle_register_per_email": (5, 3600),
    "throttle_refresh_per_address": (2, 60),
    "throttle_refresh_per_user": (3, 60),
}


@contextlib.asynccontextmanager
async def tight_client(make_settings, **overrides):
    app = create_app(make_settings(**{**TIGHT, **overrides}))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://auth"
        ) as c:
            yield app, c
    finally:
        await app.state.db.dispose()


def assert_throttled(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "rate_limited"
    retry = int(r.headers["retry-after"])
    assert retry >= 1 and r.json()["retry_after"] == retry
    return retry


async def account(c: httpx.AsyncClient, api) -> Callable[..., Awaitable[httpx.Response]]:
    """Register a fresh e-mail; return ``login(source, password=wrong)`` for it."""
    email = api.new_email()
    body = {"email": email, "password": api.password, "full_name": "A"}
    body["organization_name"] = "B"
    assert (await c.post("/v1/auth/register", json=body)).status_code == 201

    async def login(source: str, password: str = "wrong password!") -> httpx.Response:
        return await c.post(
            "/v1/auth/login",
            json={"email": email, "password": password},
            headers={"X-Forwarded-For": source},
        )

    return login


async def test_a_strangers_failures_do_not_lock_the_owner_out(api):
    email = api.new_email()
    await api.registered(email=email)
    attacker, owner = "203.0.113.66", "198.51.100.20"
    for _ in range(5):
        assert (await api.login(email, "wrong password!", address=attacker)).status_code == 401
    # The guesser is stopped, for longer than the sliding window's fading share needs...
    retry = assert_throttled(await api.login(email, "wrong password!", address=attacker))
    # (two fixed windows approximate the sliding one: at most window + window/limit)
    assert 1 <= retry <= 900 + 900 // 5
    # ...even with the right password: it could be a lucky guess.
    assert_throttled(await api.login(email, address=attacker))
    # The owner, from an address that never failed, signs in, again and again.
    for _ in range(3):
        assert (await api.login(email, address=owner)).status_code == 200
        assert_throttled(await api.login(email, "wrong password!", address=attacker))
    # An unknown e-mail is throttled the same way (no hint it does not exist).
    ghost = api.new_email()
    for _ in range(5):
        assert (await api.login(ghost, address=attacker)).status_code == 401
    assert_throttled(await api.login(ghost, address=attacker))


async def test_guessing_one_email_from_many_sources_is_still_slowed(make_settings, api):
    ceiling = {"throttle_login_failures_ceiling": (8, 900), "throttle_login_per_address": (50, 60)}
    async with tight_client(make_settings, **ceiling) as (_, c):
        login = await account(c, api)

        # (each source in its own /24: one network counts as one source)
        sources = [f"192.0.{n}.1" for n in range(1, 6)]
        for source in sources:  # five failures, one per source: the e-mail's limit
            assert (await login(source)).status_code == 401
        # A source that failed before gets no second guess while the e-mail is over it...
        assert_throttled(await login(sources[0]))
        # ...nor does another address of a network that failed...
        assert_throttled(await login("192.0.1.2"))
        # ...a fresh one gets one, then joins them.
        assert (await login("192.0.6.1")).status_code == 401
        assert_throttled(await login("192.0.6.1"))
        # The owner, from a fresh address, still signs in (and resets the e-mail's
        # count, not the ceiling's).
        assert (await login("198.51.100.7", api.password)).status_code == 200
        assert (await login("192.0.7.1")).status_code == 401
        assert (await login("192.0.8.1")).status_code == 401  # the 8th failure: the ceiling
        # Over the ceiling every new source waits, a brand-new one of the owner's too:
        # reaching it took as many networks as its limit...
        assert_throttled(await login("192.0.9.1"))
        assert_throttled(await login("198.18.0.8", api.password))
        # ...but the owner's address that signed in before is exempt.
        assert (await login("198.51.100.7", api.password)).status_code == 200


async def test_a_48_sweep_cannot_fill_the_ceiling_and_the_owners_known_source_passes_it(
    make_settings, api
):
    """A host rotating through the /64s of its /48 used to count as 65,536 fresh
    sources: one guess each until the ceiling, then the owner locked out. Now its
    /48 is one network; 100+ networks do fill the ceiling, but the owner's source
    that signed in before still signs in, while a brand-new source is refused."""
    limits = {"throttle_login_per_address": (1000, 60)}
    async with tight_client(make_settings, **limits) as (_, c):
        login = await account(c, api)

        owner = "2001:db8:cafe:1::20"
        assert (await login(owner, api.password)).status_code == 200  # known from now on

        sweep = [await login(f"2001:db8:bad:{n:x}::1") for n in range(40)]
        failed = [r.status_code for r in sweep].count(401)
        assert failed == 5  # the e-mail's limit; the other /64s of the /48 are refused
        assert all(r.status_code == 429 for r in sweep if r.status_code != 401)

        statuses = [(await login(f"198.18.{n}.1")).status_code for n in range(110)]
        assert statuses[:95] == [401] * 95  # 5 + 95 = the ceiling (100)
        assert set(statuses[95:]) == {429}

        assert_throttled(await login("192.0.2.200", api.password))  # brand-new: refused
        assert (await login("2001:db8:cafe:1:abcd::1", api.password)).status_code == 200


async def test_concurrent_guesses_from_one_source_are_counted_before_verifying(make_settings, api):
    """The throttle was checked before hashing and counted after: 20 guesses sent
    at once all passed the check. Now each is counted (rows locked) before argon2
    runs, so at most the pair's limit (5) ever get verified."""
    limits = {"throttle_login_per_address": (1000, 60)}
    async with tight_client(make_settings, **limits) as (app, c):
        login = await account(c, api)
        logins = app.state.logins
        verify = logins.passwords.verify
        verified = 0

        async def counting_verify(*args, **kwargs):
            nonlocal verified
            verified += 1
            await asyncio.sleep(0.3)  # as long as production argon2 takes, or longer
            return await verify(*args, **kwargs)

        logins.passwords.verify = counting_verify
        try:
            answers = await asyncio.gather(*(login("203.0.113.50") for _ in range(20)))
        finally:
            logins.passwords.verify = verify
        statuses = [r.status_code for r in answers]
        assert statuses.count(401) == 5, statuses
        assert statuses.count(429) == 15
        assert verified == 5
        # and the right password from there, now: refused too (the guesses counted)
        assert_throttled(await login("203.0.113.50", api.password))


async def test_a_right_guess_refunds_its_reservation(make_settings, api):
    """The failure counted before verifying is taken back when the password is right:
    signing in many times never counts towards the ceiling."""
    limits = {"throttle_login_failures_ceiling": (3, 900)}
    async with tight_client(make_settings, **limits) as (_, c):
        login = await account(c, api)
        for n in range(6):
            answer = await login(f"198.18.{n}.9", api.password)
            assert answer.status_code == 200, answer.text
        for n in range(3):
            assert (await login(f"192.0.{n}.9")).status_code == 401
        assert_throttled(await login("203.0.113.9", api.password))


def test_the_per_email_limits_see_networks():
    assert ceiling_group("2001:db8:1:2::/64") == "2001:db8:1::/48"
    assert ceiling_group(throttle_source("2001:db8:1:ffff::9")) == "2001:db8:1::/48"
    assert ceiling_group("203.0.113.9") == "203.0.113.0/24"
    assert ceiling_group("unknown") == "unknown"


def test_an_ipv6_client_counts_as_its_64():
    assert throttle_source("2001:db8:1:2:aaaa::1") == throttle_source("2001:db8:1:2:bbbb::2")
    assert throttle_source("2001:db8:1:3::1") != throttle_source("2001:db8:1:2::1")
    assert throttle_source("::ffff:203.0.113.9") == "203.0.113.9"
    assert throttle_source("203.0.113.9") == "203.0.113.9"
    assert throttle_source("not an address") == "not an address"


async def test_a_successful_login_forgets_earlier_failures(api):
    email = api.new_email()
    await api.registered(email=email)
    for _ in range(4):
        await api.login(email, "wrong password!")
    assert (await api.login(email)).status_code == 200
    for _ in range(4):
        assert (await api.login(email, "wrong password!")).status_code == 401
    assert (await api.login(email)).status_code == 200


async def test_login_attempts_per_address(make_settings, api):
    async with tight_client(make_settings) as (_, c):
        body = {"email": api.new_email(), "password": "whatever it is"}
        same = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}
        for _ in range(3):
            assert (await c.post("/v1/auth/login", json=body, headers=same)).status_code == 401
        assert_throttled(await c.post("/v1/auth/login", json=body, headers=same))
        other = {"X-Forwarded-For": "203.0.113.8"}
        assert (await c.post("/v1/auth/login", json=body, headers=other)).status_code == 401


async def test_registrations_per_address_and_refreshes_per_address_and_user(make_settings, api):
    async with tight_client(make_settings) as (_, c):
        h = {"X-Forwarded-For": "198.51.100.1"}

        def reg(email: str) -> dict:
            return {
                "email": email,
                "password": api.password,
                "full_name": "A",
                "organization_name": "B",
            }

        first = await c.post("/v1/auth/register", json=reg(api.new_email()), headers=h)
        assert first.status_code == 201
        assert (
            await c.post("/v1/auth/register", json=reg(api.new_email()), headers=h)
        ).status_code == 201
        assert_throttled(await c.post("/v1/auth/register", json=reg(api.new_email()), headers=h))

        token = first.json()["refresh_token"]
        for _ in range(2):
            r = await c.post("/v1/auth/refresh", json={"refresh_token": token}, headers=h)
            assert r.status_code == 200
            token = r.json()["refresh_token"]
        assert_throttled(await c.post("/v1/auth/refresh", json={"refresh_token": token}, headers=h))
        # Per user: a third refresh from elsewhere is fine, a fourth is not.
        r = await c.post(
            "/v1/auth/refresh",
            json={"refresh_token": token},
            headers={"X-Forwarded-For": "198.51.100.2"},
        )
        assert r.status_code == 200
        token = r.json()["refresh_token"]
        assert_throttled(
            await c.post(
                "/v1/auth/refresh",
                json={"refresh_token": token},
                headers={"X-Forwarded-For": "198.51.100.3"},
            )
        )
        # Refused refreshes spend nothing: the token still works once the window allows.


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(make_settings, api):
    async with tight_client(make_settings, trusted_proxies=["10.0.0.0/8"]) as (app, c):
        body = {"email": api.new_email(), "password": "whatever it is"}
        for n in range(3):  # spoofed addresses: all count against the real peer
            headers = {"X-Forwarded-For": f"192.0.2.{n}"}
            assert (await c.post("/v1/auth/login", json=body, headers=headers)).status_code == 401
        assert_throttled(
            await c.post("/v1/auth/login", json=body, headers={"X-Forwarded-For": "192.0.2.99"})
        )
        proxies = app.state.settings.trusted_proxies
        assert is_in("10.1.2.3", proxies)
        assert not is_in("127.0.0.1", proxies)
        assert not is_in("not an address", proxies)


async def test_the_window_slides_and_buckets_are_shared_by_replicas(app, make_settings):
    rule = Rule("test", limit=4, window_s=60)
    a, b = Throttle(app.state.db), Throttle(app.state.db)  # two replicas, one database
    for throttle in (a, b, a, b):
        await throttle.hit(rule, "subject")
    with pytest.raises(Throttled) as refused:
        await b.hit(rule, "subject")
    assert 1 <= refused.value.extra["retry_after"] <= 120
    await a.check(rule, "other subject")

    async def shift(seconds: float) -> None:
        async with app.state.db.transaction() as s:
            await s.execute(
                update(throttle_buckets).values(
                    window_start=throttle_buckets.c.window_start - timedelta(seconds=seconds),
                    expires_at=throttle_buckets.c.expires_at - timedelta(seconds=seconds),
                )
            )

    # One window later the 4 hits count as a fading "previous" share: not yet room for one.
    await shift(60)
    async with app.state.db.transaction() as s:
        now = await s.scalar(select(func.now()))
    elapsed = now.timestamp() % 60
    if elapsed < 14:  # previous share 4 * (1 - elapsed/60) > 3
        with pytest.raises(Throttled):
            await a.hit(rule, "subject")
    # Two windows later nothing counts any more.
    await shift(60)
    for _ in range(4):
        await a.hit(rule, "subject")
    await shift(200)
    assert await purge_expired(app.state.db) == 1  # "subject": a check stores nothing
    await a.clear(rule, "subject")


def test_retry_after_is_when_one_more_hit_fits():
    rule = Rule("r", limit=5, window_s=60)
    # Current window full at 10 s in: wait for the next window (50 s) plus the time
    # the 5 hits take to fade to 4 (60 * (1 - 4/5) = 12 s).
    assert _retry_after(rule, previous=0, current=5, elapsed=10) == 62
    # Room in this window but the previous share is too big: wait until it fades.
    # 10 * (1 - t/60) + 2 + 1 <= 5  ->  t >= 48
    assert _retry_after(rule, previous=10, current=2, elapsed=30) == 18
    # 2 * (1 - t/60) + 1 <= 2  ->  t >= 30 into the next window, which is 0.5 s away.
    assert _retry_after(Rule("r", 2, 60), previous=0, current=2, elapsed=59.5) == 31
