"""Access tokens for service-level tests that do not run auth.

Mints tokens in auth's exact format (EdDSA, kid, iss/aud/sub/org/role/sid/jti)
with a throwaway key and serves its JWKS to the app's verifier in memory.
End-to-end tests never use this: they get real tokens from the auth service.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from pytake_common.security import JWKSVerifier


class TokenFactory:
    def __init__(self, issuer: str = "pytake-auth", audience: str = "pytake") -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = uuid.uuid4().hex
        self.key = Ed25519PrivateKey.generate()

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, alg="EdDSA", use="sig")
        return {"keys": [jwk]}

    def mint(
        self,
        *,
        organization_id: uuid.UUID,
        role: str = "org_admin",
        user_id: uuid.UUID | None = None,
        ttl: int = 300,
        client_id: uuid.UUID | None = None,
        scope: str | None = None,
    ) -> str:
        """A user's token, or with ``client_id`` an API client's (its subject, as auth's
        client-credentials grant mints them), ``scope`` narrowing it."""
        now = int(time.time())
        if client_id is not None:
            user_id = client_id
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id or uuid.uuid4()),
            "org": str(organization_id),
            "role": role,
            "sid": uuid.uuid4().hex,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
        }
        if client_id is not None:
            claims["client_id"] = str(client_id)
        if scope is not None:
            claims["scope"] = scope
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.kid})

    def headers(self, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.mint(**kwargs)}"}

    def install(self, app: FastAPI) -> None:
        jwks = self.jwks()
        transport = httpx.MockTransport(lambda _req: httpx.Response(200, json=jwks))
        app.state.verifier = JWKSVerifier(
            "http://auth.test/.well-known/jwks.json",
            issuer=self.issuer,
            audience=self.audience,
            client=httpx.AsyncClient(transport=transport),
        )
