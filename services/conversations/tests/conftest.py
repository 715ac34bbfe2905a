import pytake_conversations
from pytake_conversations.app import create_app
from pytake_conversations.config import Settings
from pytake_devstack.pytest_plugin import service_suite

# One migrated database for the suite: every test works in its own organization.
database_url, settings, app, tokens, client = service_suite(
    pytake_conversations, create_app, Settings, "conversations", shared_database=True
)
