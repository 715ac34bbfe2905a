import asyncio
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pytake_common.errors import Unauthorized
from pytake_common.security import JWKSVerifier, Role
from pytake_devstack.tokens import TokenFactory


def _verifier(factory: TokenFactory, calls: list[int] | None = None) -> JWKSVerifier:
    def serve(_req: httpx.Request) -> httpx.Response:
        if calls is not None:
            calls.append(1)
        return httpx.Response(200, json=factory.jwks())

    return JWKSVerifier(
        "http://auth/jwks",
        issuer=factory.issuer,
        audience=factory.audience,
        client=httpx.AsyncClient(transport=httpx.MockTransport(serve)),
        min_refresh_s=0,
    )


async def test_valid_token_gives_the_principal():
    f = TokenFactory()
    org, user = uuid.uuid4(), uuid.uuid4()
    p = await _verifier(f).principal(f.mint(organization_id=org, user_id=user, role="agent"))
    assert (p.organization_id, p.user_id, p.role) == (org, user, Role.AGENT)


@pytest.mark.parametrize(
    "mutate", ["expired", "audience", "issuer", "hs256", "none", "foreign_key"]
)
async def test_bad_tokens_are_refused(mutate):
    f = TokenFactory()
    now = int(time.time())
    claims = {
        "iss": f.issuer,
        "aud": f.audience,
        "sub": str(uuid.uuid4()),
        "org": str(uuid.uuid4()),
        "role": "agent",
        "iat": now,
        "exp": now + 60,
    }
    key, alg, headers = f.key, "EdDSA", {"kid": f.kid}
    if mutate == "expired":
        claims["exp"] = now - 10
    elif mutate == "audience":
        claims["aud"] = "someone-else"
    elif mutate == "issuer":
        claims["iss"] = "evil"
    elif mutate == "hs256":
        key, alg = "shared-secret-guess-shared-secret", "HS256"
    elif mutate == "none":
        key, alg = None, "none"
    elif mutate == "foreign_key":
        key = Ed25519PrivateKey.generate()
    token = jwt.encode(claims, key, algorithm=alg, headers=headers)
    with pytest.raises(Unauthorized):
        await _verifier(f).verify(token)


async def test_unknown_kid_triggers_one_refetch_then_uses_cache():
    f = TokenFactory()
    calls: list[int] = []
    v = _verifier(f, calls)
    token = f.mint(organization_id=uuid.uuid4())
    await v.verify(token)
    await v.verify(token)
    assert len(calls) == 1
    f.kid = "rotated"  # the issuer rotates its key id
    await v.verify(f.mint(organization_id=uuid.uuid4()))
    assert len(calls) == 2


async def test_a_verified_token_is_cached_until_it_expires(monkeypatch):
    f = TokenFactory()
    v = _verifier(f)
    decoded: list[int] = []
    real_decode = jwt.decode

    def counting_decode(*args, **kwargs):
        decoded.append(1)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    org = uuid.uuid4()
    token = f.mint(organization_id=org, role="viewer", ttl=2)
    first = await v.principal(token)
    assert await v.principal(token) == first
    assert (await v.verify(token))["org"] == str(org)
    assert len(decoded) == 1  # verified once, then from the cache
    await asyncio.sleep(
        max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time()) + 0.05
    )
    with pytest.raises(Unauthorized, match="expired"):
        await v.verify(token)
    assert v.cached(token) is None


async def test_a_cached_token_of_a_key_no_longer_published_is_refused():
    f = TokenFactory()
    v = _verifier(f)
    v.cache_ttl_s = 0.2
    token = f.mint(organization_id=uuid.uuid4())
    await v.verify(token)
    f.key, f.kid = Ed25519PrivateKey.generate(), "next"  # auth rotates and drops the old key
    await asyncio.sleep(0.25)  # the JWKS is stale: the cache is not trusted without a refetch
    with pytest.raises(Unauthorized, match="unknown signing key"):
        await v.verify(token)
    await v.verify(f.mint(organization_id=uuid.uuid4()))


async def test_the_cache_is_bounded():
    f = TokenFactory()
    v = _verifier(f)
    v.cache_size = 2
    tokens = [f.mint(organization_id=uuid.uuid4()) for _ in range(3)]
    for token in tokens:
        await v.verify(token)
    assert v.cached(tokens[0]) is None  # the oldest went first
    assert v.cached(tokens[1]) is not None and v.cached(tokens[2]) is not None
