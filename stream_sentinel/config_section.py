"""The base of every config section, shared by ``config`` and the modules that own a section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
