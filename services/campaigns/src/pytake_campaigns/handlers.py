"""Consumers of other services' events: the replicas, and recipients' progress."""

from pytake_campaigns.config import Settings
from pytake_campaigns.progress import progress_handlers
from pytake_campaigns.replicas import REPLICA_HANDLERS
from pytake_common.consumer import Handler

GROUP = "campaigns"


def handlers(settings: Settings) -> dict[str, Handler]:
    return {**REPLICA_HANDLERS, **progress_handlers(settings.campaign_rates)}
