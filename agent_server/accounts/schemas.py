"""What an agent may send about itself, with the Ceki seed's field names and length limits.

These pydantic models are the boundary: anything that passes them fits the database on both
backends (no control characters, bounded sizes, http(s) URLs, valid emails).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WrapValidator

from agent_server.kernel.inputs import check_json, check_moment, check_text

CURRENCY_CODES = ("BTC", "ETH", "USDT", "USDC")
DEFAULT_CURRENCY = "USDT"
# A bound on each free-form object (links, formats, examples), serialised as JSON.
MAX_OBJECT_CHARS = 10_000


def _no_nul(value: str) -> str:
    return check_text(value)


def _no_nul_multiline(value: str) -> str:
    return check_text(value, multiline=True)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


def _email(value: str) -> str:
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid email address ({exc})") from None
    return result.normalized.lower()


def _object(value: dict[str, Any]) -> dict[str, Any]:
    return check_json(value, max_chars=MAX_OBJECT_CHARS)


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _utc(value: datetime) -> datetime:
    return check_moment(value.replace(tzinfo=UTC) if value.tzinfo is None else value)


Name = Annotated[
    str,
    Field(min_length=1, max_length=255),
    BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v),
    AfterValidator(_no_nul),
]
Email = Annotated[
    str,
    Field(max_length=255, json_schema_extra={"format": "email"}),
    BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v),
    AfterValidator(_no_nul),
    AfterValidator(_email),
]
Url = Annotated[
    str,
    Field(max_length=500, json_schema_extra={"format": "uri"}),
    AfterValidator(_no_nul),
    AfterValidator(_http_url),
]
Text50 = Annotated[str, Field(max_length=50), AfterValidator(_no_nul)]
Text100 = Annotated[str, Field(max_length=100), AfterValidator(_no_nul)]
Text500 = Annotated[str, Field(max_length=500), AfterValidator(_no_nul_multiline)]
Text5000 = Annotated[str, Field(max_length=5000), AfterValidator(_no_nul_multiline)]
Label100 = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_no_nul)]
Label10 = Annotated[str, Field(min_length=1, max_length=10), AfterValidator(_no_nul)]
JsonObject = Annotated[dict[str, Any], WrapValidator(lambda v, handler: handler(_object(v)))]
Currency = Annotated[Literal["BTC", "ETH", "USDT", "USDC"], BeforeValidator(_upper)]
Timestamp = Annotated[datetime, AfterValidator(_utc)]
VerificationCode = Annotated[
    str,
    Field(min_length=6, max_length=6, pattern=r"^[0-9]{6}$", examples=["123456"]),
]

# Fields kept in ``Agent.profile`` (JSON) rather than in columns of their own.
PROFILE_FIELDS = (
    "avatar",
    "website_url",
    "version",
    "limitations",
    "sla",
    "privacy_url",
    "skills",
    "languages",
    "tags",
    "links",
    "input_formats",
    "example_requests",
    "example_responses",
    "env_requirements",
)
LIST_FIELDS = (
    "skills",
    "languages",
    "tags",
    "links",
    "input_formats",
    "example_requests",
    "example_responses",
    "env_requirements",
)


class AgentMetadata(BaseModel):
    """The optional descriptive fields shared by registration and profile updates."""

    model_config = ConfigDict(extra="forbid")

    avatar: Url | None = None
    owner_email: Email | None = None
    description: Text5000 | None = None
    website_url: Url | None = None
    callback_url: Url | None = None
    version: Text50 | None = None
    last_updated_at: Timestamp | None = None
    limitations: Text5000 | None = None
    sla: Text500 | None = None
    license: Text100 | None = None
    privacy_url: Url | None = None
    skills: list[Label100] | None = Field(default=None, max_length=100)
    languages: list[Label10] | None = Field(default=None, max_length=50)
    tags: list[Label100] | None = Field(default=None, max_length=50)
    links: list[JsonObject] | None = Field(default=None, max_length=20)
    input_formats: list[JsonObject] | None = Field(default=None, max_length=50)
    example_requests: list[JsonObject] | None = Field(default=None, max_length=20)
    example_responses: list[JsonObject] | None = Field(default=None, max_length=20)
    env_requirements: list[JsonObject] | None = Field(default=None, max_length=50)


class RegisterAgent(AgentMetadata):
    """``POST /api/agent/register``: a name, an email and optionally a deposit currency."""

    name: Name
    email: Email
    currency: Currency | None = Field(
        default=None, description=f"Deposit currency; {DEFAULT_CURRENCY} when omitted."
    )


class UpdateAgent(AgentMetadata):
    """``PATCH /api/agent/me``: only the fields sent change; ``null`` clears a field."""

    name: Name | None = None


class VerifyEmail(BaseModel):
    """``POST /api/agent/verify-email``."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    code: VerificationCode


class ResendVerification(BaseModel):
    """``POST /api/agent/resend-verification``."""

    model_config = ConfigDict(extra="forbid")

    email: Email


SortBy = Literal["name", "created_at", "last_accessed_at", "last_updated_at"]
