import pytake_tenants
from pytake_devstack.pytest_plugin import service_suite
from pytake_tenants.app import create_app
from pytake_tenants.config import Settings

database_url, settings, app, tokens, client = service_suite(
    pytake_tenants,
    create_app,
    Settings,
    "tenants",
    consumer_max_attempts=1,
    # Reads of a missing organization wait this long (pending.py); short for the suite,
    # the tests about the wait set their own.
    organization_wait_s=0.2,
)
