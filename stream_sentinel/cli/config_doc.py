"""The configuration reference (docs/config.md), rendered from the config model.

Regenerate after changing a key in ``config.py``::

    python -m stream_sentinel.cli.config_doc > docs/config.md

A test fails while the file differs from what this module renders, so the
reference cannot drift from the model. Descriptions are the fields' attribute
docstrings; environment variable names follow the rules ``config_env`` applies.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from stream_sentinel.config import Config
from stream_sentinel.config_env import CONFIG_PATH_ENV, ENV_PREFIX, _model, _unwrap

# Placeholders in variable names, for keys whose name part is chosen by the user.
INDEX = "<N>"
MAP_KEY = {
    "absolute_limits": "<SIGNAL>",
    "floors": "<SIGNAL>",
    "prices": "<MODEL>",
    "labels": "<LABEL>",
}
# Defaults a validator fills in, so the field itself looks required.
FILLED_IN = {
    ("heartbeat", "name"): "`<kind>-<N>`",
    ("alertmanager", "name"): "`alertmanager-<N>`",
}


@dataclass(frozen=True)
class Entry:
    """One documented key."""

    section: str  # "kafka", or "heartbeat" for the [[heartbeat]] array
    key: str  # dotted inside the section: "url", "tokens.composite"
    type: str
    default: str
    env: str  # SENTINEL_... (with <N> in heartbeat entries)
    secret: bool
    description: str

    @property
    def file_env(self) -> str | None:
        return f"{self.env}_FILE" if self.secret else None

    @property
    def toml_file_key(self) -> str | None:
        """How TOML takes the secret's path instead of the secret."""
        if not self.secret:
            return None
        head, _, last = self.key.rpartition(".")
        return f'{head}_file = {{ {last} = "path" }}' if head else f'{last}_file = "path"'


def _constraints(metadata: list[Any]) -> list[str]:
    out = []
    for item in metadata:
        if isinstance(item, at.Ge):
            out.append(f">= {item.ge}")
        elif isinstance(item, at.Gt):
            out.append(f"> {item.gt}")
        elif isinstance(item, at.Le):
            out.append(f"<= {item.le}")
        elif isinstance(item, at.Lt):
            out.append(f"< {item.lt}")
        elif isinstance(item, at.MinLen):
            out.append("non-empty" if item.min_length == 1 else f"{item.min_length}+ chars")
        elif getattr(item, "pattern", None):
            out.append(f"matching `{item.pattern}`")
    return out


def _type_name(ann: Any, map_key: str = "key") -> str:
    inner, optional = _unwrap(ann)
    origin = get_origin(inner)
    if origin is Literal:
        name = " or ".join(f'"{a}"' for a in get_args(inner))
    elif origin in (Mapping, dict):
        sub = _model(get_args(inner)[1])
        shown = "{ " + ", ".join(sub.model_fields) + " }" if sub else _type_name(get_args(inner)[1])
        name = f"table: {map_key} -> {shown}"
    elif inner is SecretStr:
        name = "string (secret)"
    else:
        name = {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
            inner, getattr(inner, "__name__", str(inner))
        )
    limits = _constraints(list(getattr(_value_info(ann), "metadata", [])))
    if limits:
        name += ", " + ", ".join(limits)
    return f"{name}, optional" if optional and origin is not Literal else name


def _value_info(ann: Any) -> FieldInfo | None:
    # Annotated[float, Field(ge=0)] keeps its limits in a FieldInfo inside the Annotated.
    for arg in get_args(ann)[1:] if get_args(ann) else ():
        if isinstance(arg, FieldInfo):
            return arg
    return None


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, Mapping | tuple | list) and not value:
        return "none"
    return f"`{value}`"


def _describe(field: FieldInfo) -> str:
    return " ".join((field.description or "").split())


def _rows(model: type[BaseModel], section: str, env: str, prefix: str = "") -> Iterator[Entry]:
    for name, field in model.model_fields.items():
        key, var = f"{prefix}{name}", f"{env}_{name.upper()}"
        sub = _model(field.annotation)
        if sub is not None:
            # a nested table such as heartbeat tokens: one row per key in it
            yield from _rows(sub, section, var, f"{key}.")
            continue
        placeholder = MAP_KEY.get(name, "<KEY>")
        type_name = _type_name(field.annotation, placeholder.strip("<>").lower())
        limits = _constraints(field.metadata)
        if limits:
            type_name += ", " + ", ".join(limits)
        inner, _ = _unwrap(field.annotation)
        mapping = get_origin(inner) in (Mapping, dict)
        if mapping:
            # The whole table as a TOML inline table, or one entry per variable.
            var = f"{var}<br>{var}_{placeholder}"
        yield Entry(
            section=section,
            key=key,
            type=type_name,
            default=FILLED_IN.get((section, key)) or _default(field),
            env=var,
            secret=_unwrap(field.annotation)[0] is SecretStr,
            description=_describe(field),
        )
        value_model = _model(get_args(inner)[1]) if mapping else None
        if value_model is not None:
            # Keys inside each entry: set with the entry, never one by one.
            for sub_name, sub_field in value_model.model_fields.items():
                yield Entry(
                    section=section,
                    key=f"{key}.{placeholder.lower()}.{sub_name}",
                    type=_type_name(sub_field.annotation)
                    + "".join(f", {c}" for c in _constraints(sub_field.metadata)),
                    default=_default(sub_field),
                    env="",
                    secret=False,
                    description=_describe(sub_field),
                )


def entries() -> list[Entry]:
    """Every key of the config model, in the model's order."""
    out: list[Entry] = []
    for name, field in Config.model_fields.items():
        inner, _ = _unwrap(field.annotation)
        env = f"{ENV_PREFIX}{name.upper()}"
        if get_origin(inner) is tuple:  # [[heartbeat]]: an array of tables
            item = _model(get_args(inner)[0])
            assert item is not None
            out += _rows(item, name, f"{env}_{INDEX}")
            continue
        sub = _model(inner)
        assert sub is not None, f"top-level key {name} is not a section"
        out += _rows(sub, name, env)
    return out


def _section_doc(name: str) -> str:
    field = Config.model_fields[name]
    inner, _ = _unwrap(field.annotation)
    if get_origin(inner) is tuple:
        inner = get_args(inner)[0]
    doc = getattr(inner, "__doc__", None) or ""
    # pydantic gives every model a generic docstring; only a written one is shown
    if doc.startswith("A base class for creating Pydantic models"):
        return ""
    return inspect.cleandoc(doc)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


HEADER = f"""\
# Configuration reference

<!-- Generated by `python -m stream_sentinel.cli.config_doc > docs/config.md`
from the model in stream_sentinel/config.py; edit the model, not this file. -->

One TOML file holds the configuration: `--config PATH`, else `${CONFIG_PATH_ENV}`,
else `./sentinel.toml` when it exists; without any, every default below applies.
`examples/sentinel.toml` is a commented starting point. Precedence, lowest
first: defaults, the TOML file, environment variables. An invalid value exits
with status 2 and a message naming the key (`config error: alerting.multiplier:
...`); values of secrets never appear in messages, logs, `/status` or metrics.

**Environment variables.** `{ENV_PREFIX}<SECTION>_<KEY>` sets `[section] key`
(`SENTINEL_ALERTING_MULTIPLIER=3`). Values are read as TOML values (`60`,
`2.5`, `true`, `{{ blocked_pct = 1.0 }}`) unless the key holds text, where the
value is taken as it is; an empty value clears an optional key. Table keys
take one entry per variable (`SENTINEL_ALERTING_FLOORS_BLOCKED_PCT=0.05`) or
the whole table as a TOML inline table (`SENTINEL_ALERTING_FLOORS='{{
blocked_pct = 0.05 }}'`); an entry whose name is not a lower-case identifier
(a model called `gpt-4o`) can only be given in the inline table or the file.
Heartbeat targets are numbered from 0 in file order:
`SENTINEL_HEARTBEAT_<N>_<KEY>` changes entry N, or appends it when N is the
next free index (`SENTINEL_HEARTBEAT_0_URL`, `SENTINEL_HEARTBEAT_0_TOKENS_COMPOSITE`).

**Secrets** (marked *secret* below) also come from files, so they can live in
Docker or Kubernetes secrets rather than in the environment or the TOML file:
`<VARIABLE>_FILE=/run/secrets/name` in the environment, or `<key>_file =
"path"` in TOML (relative to the config file; `tokens_file = {{ composite =
"path" }}` for heartbeat tokens). One trailing newline is dropped; giving a
secret both inline and as a file is an error.
"""


def render() -> str:
    parts = [HEADER]
    by_section: dict[str, list[Entry]] = {}
    for entry in entries():
        by_section.setdefault(entry.section, []).append(entry)
    for section, rows in by_section.items():
        array = get_origin(_unwrap(Config.model_fields[section].annotation)[0]) is tuple
        parts.append(f"\n## `[[{section}]]`\n" if array else f"\n## `[{section}]`\n")
        doc = _section_doc(section)
        if doc:
            parts.append(f"\n{doc}\n")
        parts.append(
            "\n| key | type | default | environment variable | description |\n"
            "| --- | --- | --- | --- | --- |\n"
        )
        for e in rows:
            env = f"`{e.env}`".replace("<br>", "`<br>`") if e.env else "in the entry's table"
            description = e.description
            if e.secret:
                env += f"<br>`{e.file_env}`"
                description = f"*Secret*; TOML file form: `{e.toml_file_key}`. {description}"
            cells = (f"`{e.key}`", e.type, e.default, env, description)
            parts.append("| " + " | ".join(_cell(c) for c in cells) + " |\n")
    return "".join(parts)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
