import uuid

import pytest

import pytake_contacts
from pytake_contacts.app import create_app
from pytake_contacts.config import Settings
from pytake_devstack.pytest_plugin import service_suite

database_url, settings, app, tokens, client = service_suite(
    pytake_contacts, create_app, Settings, "contacts"
)


@pytest.fixture
def org():
    return uuid.uuid4()


@pytest.fixture
def agent(tokens, org):
    return tokens.headers(organization_id=org, role="agent")


@pytest.fixture
def admin(tokens, org):
    return tokens.headers(organization_id=org, role="org_admin")
