"""Auth rules: e-mail and password normalization, password policy, typed errors."""

import unicodedata

from pytake_auth.tables import CLIENT_ROLES
from pytake_common.errors import Conflict, Forbidden, InvalidInput, Unauthorized
from pytake_common.scopes import beyond_role, unknown_scopes

MIN_PASSWORD = 10
MAX_PASSWORD = 128
REGISTRANT_ROLE = "org_admin"


class EmailTaken(Conflict):
    code, title = "email_taken", "Email already registered"


class WeakPassword(InvalidInput):
    code, title = "weak_password", "Password does not meet the policy"

    def __init__(self, detail: str) -> None:
        super().__init__(
            detail,
            errors=[{"loc": ["body", "password"], "msg": detail, "type": "weak_password"}],
        )


class InvalidCredentials(Unauthorized):
    code, title = "invalid_credentials", "Invalid credentials"

    def __init__(self) -> None:
        super().__init__("the email or the password is incorrect")


class InvalidRefreshToken(Unauthorized):
    code, title = "invalid_refresh_token", "Invalid refresh token"

    def __init__(self) -> None:
        super().__init__("the refresh token is invalid, expired or revoked; log in again")


class SessionEnded(Unauthorized):
    code, title = "session_revoked", "Session ended"

    def __init__(self) -> None:
        super().__init__("this session was revoked or has expired; log in again")


def normalize_email(email: str) -> str:
    """The stored form of an e-mail address: trimmed and lowercased (unique case-insensitively)."""
    return email.strip().lower()


def normalize_password(password: str) -> str:
    """NFKC-normalize so the same password typed on different keyboards hashes the same."""
    return unicodedata.normalize("NFKC", password)


def check_password_policy(password: str, email: str) -> None:
    """Raise :class:`WeakPassword` unless ``password`` (normalized) is acceptable."""
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"password must be at least {MIN_PASSWORD} characters long")
    if len(password) > MAX_PASSWORD:
        raise WeakPassword(f"password must be at most {MAX_PASSWORD} characters long")
    if not password.strip():
        raise WeakPassword("password must not be only whitespace")
    if password.strip().casefold() == email.strip().casefold():
        raise WeakPassword("password must not be the email address")


class InvalidCurrentPassword(InvalidInput):
    code, title = "invalid_current_password", "Current password is incorrect"

    def __init__(self) -> None:
        super().__init__(
            "the current password is incorrect",
            errors=[
                {
                    "loc": ["body", "current_password"],
                    "msg": "incorrect password",
                    "type": "invalid_current_password",
                }
            ],
        )


class LastAdmin(Conflict):
    code, title = "last_admin", "The organization needs an administrator"

    def __init__(self) -> None:
        super().__init__(
            "this would leave the organization without an active administrator; "
            "make someone else an org_admin first"
        )


class RoleNotAllowed(Forbidden):
    code, title = "role_not_allowed", "Role not allowed"


#: Roles an administrator may give; ``super_admin`` only by a super_admin.
ASSIGNABLE_ROLES = ("agent", "viewer", "org_admin", "super_admin")


def check_role_management(actor_role: str, target_role: str | None, new_role: str | None) -> None:
    """Only a super_admin grants ``super_admin`` or manages a super_admin account."""
    if actor_role == "super_admin":
        return
    if new_role == "super_admin" or target_role == "super_admin":
        raise RoleNotAllowed("only a super_admin may grant or manage the super_admin role")


class InvalidScope(InvalidInput):
    code, title = "invalid_scope", "Scope not allowed"


def check_client_grant(role: str, scopes: list[str] | None) -> None:
    """An API client is never a super_admin (an operator is a person), and its scopes are
    known ones its role can use (a scope narrows a role, never widens it)."""
    if role not in CLIENT_ROLES:
        raise RoleNotAllowed(f"an API client may not have the role {role}")
    if scopes is None:
        return
    if unknown := unknown_scopes(scopes):
        raise InvalidScope(f"unknown scopes: {', '.join(unknown)}")
    if beyond := beyond_role(role, scopes):
        raise InvalidScope(f"the role {role} cannot use: {', '.join(beyond)}")
