from pytake_common.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "tenants"
    port: int = 8002
    #: A new organization starts on a trial of this plan (then falls back to free);
    #: unset: it starts on the free plan with no trial.
    signup_trial_plan: str | None = None
    signup_trial_days: int = 14
    #: How often ended trials are looked for.
    trial_check_interval_s: float = 60.0
