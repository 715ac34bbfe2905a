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
