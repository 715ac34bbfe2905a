import pytake_campaigns
from pytake_campaigns.app import create_app
from pytake_campaigns.config import Settings
from pytake_devstack.pytest_plugin import service_suite

database_url, settings, app, tokens, client = service_suite(
    pytake_campaigns,
    create_app,
    Settings,
    "campaigns",
    consumer_max_attempts=1,
)
