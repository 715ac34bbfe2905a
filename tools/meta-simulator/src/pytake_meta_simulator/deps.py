"""The per-app simulator context and the FastAPI dependency that reads it."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from pytake_meta_simulator.arrivals import LoopLag, QuietCollector
from pytake_meta_simulator.settings import SimulatorSettings
from pytake_meta_simulator.state import Store
from pytake_meta_simulator.webhooks import WebhookSender


@dataclass
class SimulatorContext:
    settings: SimulatorSettings
    store: Store = field(default_factory=Store)
    lag: LoopLag = field(default_factory=LoopLag)
    #: Set in the simulator's own process (``create_app(quiet_gc=True)``).
    quiet: QuietCollector | None = None
    _sender: WebhookSender | None = None

    def attach(self, sender: WebhookSender | None) -> None:
        """Set (at startup) or clear (at shutdown) the webhook sender."""
        self._sender = sender

    @property
    def sender(self) -> WebhookSender:
        if self._sender is None:
            raise RuntimeError("the simulator app was not started (lifespan not run)")
        return self._sender


async def get_ctx(request: Request) -> SimulatorContext:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop
    # per request for an attribute read.
    ctx = request.app.state.sim
    assert isinstance(ctx, SimulatorContext)
    return ctx
