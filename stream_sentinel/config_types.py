"""Building blocks shared by the config sections, kept apart so a section's model
can live next to the code that uses it without importing ``config``."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

# Longest secret accepted anywhere: a token is sent in headers and URLs.
MAX_TOKEN_CHARS = 1024
# A name or an IP address to bind, never a URL, list or path.
BindHost = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:%-]{1,253}$")]


def check_token(value: SecretStr) -> SecretStr:
    # Tokens end up in URL paths and query strings; the message must not echo them.
    text = value.get_secret_value()
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError("must be non-empty, without spaces or control characters")
    if text in (".", ".."):
        # quoted or not, a path segment "." or ".." is resolved away by servers
        raise ValueError("must not be '.' or '..'")
    if len(text) > MAX_TOKEN_CHARS:
        raise ValueError(f"must be at most {MAX_TOKEN_CHARS} characters")
    return value


Token = Annotated[SecretStr, AfterValidator(check_token)]


class Section(BaseModel):
    # strict: a quoted number or a boolean where a number belongs is a mistake to report.
    # Attribute docstrings become field descriptions: docs/config.md is generated from them.
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
    )
