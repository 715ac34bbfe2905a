"""PyTake meta-simulator: a local stand-in for Meta's WhatsApp Cloud API.

It answers the Graph API calls PyTake makes (send message, mark as read, media
lookup and download) and plays Meta's webhook sender (signed inbound messages
and ``sent``/``delivered``/``read``/``failed`` statuses). A control API under
``/_sim`` registers numbers, injects inbound messages and failures, and shows
what was sent. All state lives in memory: see :mod:`pytake_meta_simulator.state`.
"""

from pytake_meta_simulator.app import create_app
from pytake_meta_simulator.settings import SimulatorSettings

__all__ = ["SimulatorSettings", "create_app"]
