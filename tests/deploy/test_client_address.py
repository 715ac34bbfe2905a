"""The client address chain: Ingress -> api-gateway -> services.

A login's throttle bucket and the gateway's public rate limit are keyed by the
client's address. Each hop is configured by the environment the manifests (or
Compose) give it; these tests run the real code of each hop (uvicorn's
proxy-headers middleware, auth's ``client_address``) with that environment and
check the address that arrives is the client's, not a pod's.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn.config
import yaml
from starlette.requests import Request
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from pytake_auth.api.deps import client_address
from pytake_auth.config import Settings as AuthSettings
from pytake_common.cli import run_cli

REPO = Path(__file__).resolve().parents[2]
CLIENT = "203.0.113.9"
#: Pod addresses as common CNIs hand them out (kind/flannel, Calico, EKS VPC CNI,
#: Cilium in CGNAT space).
POD_NETWORKS = (
    ("10.244.1.5", "10.244.2.7"),
    ("192.168.3.4", "192.168.9.1"),
    ("100.64.0.9", "100.64.3.3"),
)
#: Compose's default bridge networks.
COMPOSE_NETWORKS = (("172.18.0.1", "172.18.0.5"), ("192.168.16.1", "192.168.16.4"))


def compose_env(name: str) -> dict[str, str]:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    return {k: str(v) for k, v in services[name]["environment"].items()}


def uvicorn_client(env: dict[str, str], peer: str, forwarded: str | None) -> str:
    """The client address uvicorn gives the app, with ``env``'s FORWARDED_ALLOW_IPS
    (uvicorn's own default when unset), for a request from ``peer``."""
    trusted = env.get("FORWARDED_ALLOW_IPS", uvicorn.config.Config(app=None).forwarded_allow_ips)
    seen: dict[str, Any] = {}

    async def app(scope, receive, send):
        seen.update(scope)

    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {"type": "http", "client": (peer, 40000), "headers": headers, "scheme": "http"}
    asyncio.run(ProxyHeadersMiddleware(app, trusted_hosts=trusted)(scope, None, None))
    return seen["client"][0]


def auth_client(env: dict[str, str], peer: str, forwarded: str) -> str:
    """The address auth's throttle keys a login by, for a request the gateway sent
    from ``peer`` with ``X-Forwarded-For: forwarded``."""
    host = uvicorn_client(env, peer, forwarded)
    settings = AuthSettings.model_validate(
        {"env": "test", "secret_key": "x" * 40} | _auth_fields(env)
    )
    scope = {
        "type": "http",
        "client": (host, 40000),
        "headers": [(b"x-forwarded-for", forwarded.encode())],
        "app": SimpleNamespace(state=SimpleNamespace(settings=settings)),
    }
    return asyncio.run(client_address(Request(scope)))


def _auth_fields(env: dict[str, str]) -> dict[str, Any]:
    raw = env.get("PYTAKE_TRUSTED_PROXIES")
    return {} if raw is None else {"trusted_proxies": yaml.safe_load(raw)}


def test_uvicorn_still_reads_forwarded_allow_ips_from_the_environment():
    """The manifests rely on uvicorn reading this variable when ``run_cli`` passes none."""
    assert "FORWARDED_ALLOW_IPS" in inspect.getsource(uvicorn.config.Config.__init__)
    assert "forwarded_allow_ips" not in inspect.getsource(run_cli)


@pytest.mark.parametrize(("ingress_pod", "gateway_pod"), POD_NETWORKS)
def test_every_overlay_carries_the_client_address_to_the_gateway_and_auth(
    overlay, manifests, ingress_pod, gateway_pod
):
    # ingress-nginx sets X-Forwarded-For to the address it accepted the connection from.
    gateway = uvicorn_client(
        manifests.environment("Deployment", "api-gateway"), ingress_pod, CLIENT
    )
    assert gateway == CLIENT, f"{overlay}: the gateway's rate limits key by {gateway}"
    # The gateway replaces X-Forwarded-For with that address on the way upstream.
    auth = auth_client(manifests.environment("Deployment", "auth"), gateway_pod, gateway)
    assert auth == CLIENT, f"{overlay}: auth throttles logins by {auth}"
    for name in ("tenants", "contacts", "conversations", "whatsapp-gateway"):
        seen = uvicorn_client(manifests.environment("Deployment", name), gateway_pod, gateway)
        assert seen == CLIENT, f"{overlay}: {name} sees {seen}"


@pytest.mark.parametrize(("host_side", "gateway_container"), COMPOSE_NETWORKS)
def test_compose_carries_the_client_address_and_its_edge_believes_no_caller(
    host_side, gateway_container
):
    # A caller reaching the published port may send any X-Forwarded-For: the
    # gateway is the edge in Compose and must ignore it.
    gateway = uvicorn_client(compose_env("api-gateway"), host_side, "198.51.100.1")
    assert gateway == host_side
    gateway = uvicorn_client(compose_env("api-gateway"), CLIENT, "198.51.100.1")
    assert gateway == CLIENT
    assert auth_client(compose_env("auth"), gateway_container, CLIENT) == CLIENT
    for name in ("tenants", "contacts", "conversations", "whatsapp-gateway"):
        assert uvicorn_client(compose_env(name), gateway_container, CLIENT) == CLIENT, name
