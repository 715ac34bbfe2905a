import pytake_integrations
from pytake_devstack.pytest_plugin import service_suite
from pytake_integrations.app import create_app
from pytake_integrations.config import Settings

database_url, settings, app, tokens, client = service_suite(
    pytake_integrations,
    create_app,
    Settings,
    "integrations",
    consumer_max_attempts=1,
    # Receivers in these tests listen on loopback; test_ssrf turns this off.
    webhooks_allow_loopback=True,
    retry_base_s=0.05,
    retry_max_delay_s=0.2,
    delivery_timeout_s=2.0,
)
