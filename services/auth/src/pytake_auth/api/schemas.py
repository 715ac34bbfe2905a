"""Request and response bodies of the auth API."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# The policy (10..128 characters, ...) is checked after normalization and answers a
# ``weak_password`` problem; this bound only keeps absurd inputs away from argon2.
Password = Annotated[str, Field(min_length=1, max_length=1024)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(_Body):
    email: Annotated[EmailStr, Field(max_length=254)]
    password: Annotated[Password, Field(description="10 to 128 characters, not the email")]
    full_name: Name
    organization_name: Name


class LoginRequest(_Body):
    # Not EmailStr: whatever was accepted at registration must keep logging in.
    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Password


class RefreshRequest(_Body):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512)]


class User(BaseModel):
    id: uuid.UUID
    email: str
    full_name: str
    role: str
    organization_id: uuid.UUID


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")
    user: User


class JWKS(BaseModel):
    keys: list[dict[str, str]]


class UpdateMeRequest(_Body):
    full_name: Name


class ChangePasswordRequest(_Body):
    current_password: Password
    new_password: Annotated[Password, Field(description="10 to 128 characters, not the email")]


AssignableRole = Literal["agent", "viewer", "org_admin", "super_admin"]


class CreateUserRequest(_Body):
    email: Annotated[EmailStr, Field(max_length=254)]
    full_name: Name
    role: Annotated[AssignableRole, Field(description="super_admin only by a super_admin")]
    password: Annotated[Password, Field(description="10 to 128 characters, not the email")]


class UpdateUserRequest(_Body):
    full_name: Name | None = None
    role: AssignableRole | None = None


class UserDetail(BaseModel):
    id: uuid.UUID
    email: str
    full_name: str
    role: str
    organization_id: uuid.UUID
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


class UserPage(BaseModel):
    items: list[UserDetail]
    next_cursor: str | None


class CreateApiClientRequest(_Body):
    name: Name
    role: Annotated[AssignableRole, Field(description="org_admin, agent or viewer")]
    scopes: Annotated[
        list[Annotated[str, Field(max_length=64)]] | None,
        Field(
            max_length=32,
            description="narrower than the role's (docs/permissions.md); omitted: the role's",
        ),
    ] = None
    expires_at: Annotated[
        AwareDatetime | None, Field(description="the client stops working then; omitted: never")
    ] = None


class ApiClient(BaseModel):
    id: uuid.UUID
    client_id: uuid.UUID = Field(description="the same id: the client_id of the token request")
    name: str
    role: str
    scopes: list[str] | None
    expires_at: datetime | None
    created_by: uuid.UUID
    created_at: datetime
    secret_rotated_at: datetime | None
    last_used_at: datetime | None = Field(description="the last token issued (to the minute)")


class ApiClientWithSecret(ApiClient):
    client_secret: str = Field(description="shown this once; only its hash is kept")


class ApiClientPage(BaseModel):
    items: list[ApiClient]
    next_cursor: str | None


class ClientTokenResponse(BaseModel):
    """RFC 6749 §5.1 (no refresh token: a client asks again, §4.4.3)."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    scope: str | None = None


class OAuthError(BaseModel):
    """RFC 6749 §5.2."""

    error: Literal["invalid_request", "invalid_client", "unsupported_grant_type", "invalid_scope"]
    error_description: str | None = None
