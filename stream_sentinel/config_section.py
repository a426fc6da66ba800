"""What every config section model shares: strictness and documented fields."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Kafka's own rule for topic names.
Topic = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")]
# Printable text without spaces: ends up in logs, client ids and connection strings.
Plain = Annotated[str, Field(pattern=r"^[!-~]{1,255}$")]


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
