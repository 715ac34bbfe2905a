"""Auth rules: e-mail and password normalization, password policy, typed errors."""

import unicodedata

from pytake_common.errors import Conflict, InvalidInput, Unauthorized

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
