from pydantic import Field

from pytake_common.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "tenants"
    port: int = 8002
    #: A new organization starts on a trial of this plan (then falls back to free);
    #: unset: it starts on the free plan with no trial.
    signup_trial_plan: str | None = None
    signup_trial_days: int = 14
    #: How long the caller's reads of its own organization wait for it to be created
    #: (right after sign-up; see :mod:`pytake_tenants.pending`) before answering 503; at
    #: most 10 s, well under the gateway's upstream timeout (15 s).
    organization_wait_s: float = Field(default=5.0, ge=0, le=10)
    #: How often ended trials are looked for.
    trial_check_interval_s: float = 60.0
