from pydantic import Field

from pytake_common.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "campaigns"
    port: int = 8006
    #: How often the dispatcher releases recipients (each tick sends at most
    #: ``rate * tick`` recipients per campaign, so sends stay smooth within a second).
    campaign_dispatch_tick_s: float = Field(default=0.1, gt=0, le=5)
    #: Sends a campaign may have in flight (dispatched, not yet sent, failed or refused),
    #: in seconds of its rate: pause and cancel stop new sends within about this long.
    campaign_in_flight_window_s: float = Field(default=1.0, gt=0, le=10)
    #: A dispatched recipient not heard of for this long no longer holds a place in the
    #: in-flight window (a lost answer must not stall a campaign; it stays ``dispatched``).
    campaign_in_flight_stale_after_s: float = Field(default=60.0, gt=0)
    #: A dispatched or accepted recipient with no outcome this long after its dispatch,
    #: once its campaign has nothing queued, is marked ``unconfirmed`` (never sent again;
    #: a later status still moves it on), so the campaign completes.
    campaign_unconfirmed_after_s: float = Field(default=900.0, gt=0)
    #: The number's throughput when its events do not say (Meta's default per number).
    campaign_default_throughput_per_second: int = Field(default=80, ge=1, le=1000)
    #: Recipients one campaign may freeze at most.
    campaign_max_recipients: int = Field(default=1_000_000, ge=1)
    #: Price of one billable message per Meta pricing category (lower case), in
    #: ``campaign_cost_currency``; a category not listed costs 0. Override with JSON, e.g.
    #: ``PYTAKE_CAMPAIGN_RATES='{"marketing": 0.025}'``.
    campaign_rates: dict[str, float] = Field(
        default_factory=lambda: {
            "marketing": 0.0625,
            "utility": 0.02,
            "authentication": 0.0135,
            "service": 0.0,
        }
    )
    campaign_cost_currency: str = "USD"
