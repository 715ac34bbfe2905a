import pytake_automation
from pytake_automation.app import create_app
from pytake_automation.config import Settings
from pytake_devstack.pytest_plugin import service_suite

database_url, settings, app, tokens, client = service_suite(
    pytake_automation, create_app, Settings, "automation", consumer_max_attempts=1
)
