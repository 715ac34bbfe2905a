"""Every router of the contacts API, in matching order (``/import``, ``/export`` before ids)."""

from pytake_contacts.api import actions, contacts, tags, transfer

routers = [transfer.router, contacts.router, actions.router, tags.router]
