"""Layers applied to the raw TOML table before validation: secret files and env overrides.

Both walk the pydantic models they are handed instead of a list of names, so a
key added to a model is overridable from the environment without touching this file.

Rules (documented for operators in ``config.py``):

- ``SENTINEL_<SECTION>_<KEY>`` sets ``[section] key``; ``SENTINEL_HEARTBEAT_<N>_<KEY>``
  and ``SENTINEL_HEARTBEAT_<N>_TOKENS_<NAME>`` set entry ``N`` (0-based) of
  ``[[heartbeat]]``, appending it when ``N`` is the next index. Table keys take a
  sub-key (``SENTINEL_ALERTING_FLOORS_BLOCKED_PCT``) or a whole TOML inline table.
- Values are parsed as TOML values (``60``, ``2.5``, ``true``, ``{ a = 1 }``) unless
  the key holds text; an empty value clears an optional key.
- The variables Kubernetes injects for a Service named ``sentinel``
  (``SENTINEL_SERVICE_HOST``, ``SENTINEL_SERVICE_PORT*``, ``SENTINEL_PORT``,
  ``SENTINEL_PORT_<n>_<PROTO>*``) are ignored; any other unknown name is an error.
- A secret key also reads a file: ``SENTINEL_..._FILE=path`` in the environment,
  ``<key>_file = "path"`` in TOML (``tokens_file = { composite = "path" }`` for the
  token table); one trailing newline is dropped.
"""

from __future__ import annotations

import copy
import re
import tomllib
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

ENV_PREFIX = "SENTINEL_"
CONFIG_PATH_ENV = "SENTINEL_CONFIG"
MAX_SECRET_BYTES = 64 * 1024
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_INDEXED = re.compile(r"(\d{1,4})_(.+)")
# What Kubernetes injects into every pod for a Service named "sentinel" (docker
# links use the same shape): not settings, and refusing them would crash-loop the pod.
_SERVICE_LINKS = re.compile(
    r"SENTINEL_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?"
    r"|PORT|PORT_\d{1,5}_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)"
)


class ConfigError(Exception):
    """A config problem; ``key`` is dotted (``heartbeat[0].url``) or an env/file name."""

    def __init__(self, key: str, problem: str, more: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem
        self.errors: tuple[tuple[str, str], ...] = ((key, problem), *more)

    def __str__(self) -> str:
        return "\n".join(f"config error: {key}: {problem}" for key, problem in self.errors)


def format_key(loc: Sequence[int | str]) -> str:
    """``("heartbeat", 0, "url")`` -> ``heartbeat[0].url``, quoting keys as TOML would."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for "the key of this mapping entry"
            text = part if _BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
            out += f".{text}" if out else text
    return out


def secret_path(raw: str, origin: str) -> Path:
    """``raw`` as a path to a secret file, refusing what can only be a trick.

    ``..`` is refused: a secret path is written once by whoever deploys, and one
    that climbs out of its directory is far more likely an attempt to read some
    other file through the config (a mounted volume, a templated value) than a
    need. A NUL byte would make ``open`` raise ValueError instead of failing cleanly.
    """
    if "\0" in raw:
        raise ConfigError(origin, "a file path must not contain a NUL byte")
    if any(c in "\r\n" for c in raw):
        raise ConfigError(origin, "a file path must not contain a line break")
    path = Path(raw)
    if ".." in path.parts:
        raise ConfigError(origin, "a secret file path must not contain '..'; give it directly")
    return path


def read_secret_file(path: Path, origin: str) -> str:
    """The secret in ``path``; errors name ``origin`` and the path, never the content."""
    error: ConfigError | None = None
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        error = ConfigError(origin, f"cannot read secret file {str(path)!r}: {exc.strerror}")
    if error is not None:
        raise error
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError(origin, f"secret file {str(path)!r} is larger than 64 KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Raised outside the handler: UnicodeDecodeError carries the bytes it failed on.
        text = None
    if text is None:
        raise ConfigError(origin, f"secret file {str(path)!r} is not UTF-8 text")
    return text.removesuffix("\n").removesuffix("\r")


def _unwrap(ann: Any) -> tuple[Any, bool]:
    """Strip ``Annotated`` and ``| None``; says whether ``None`` was allowed."""
    optional = False
    while True:
        origin = get_origin(ann)
        if origin is Annotated:
            ann = get_args(ann)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(ann) if a is not type(None)]
            optional = optional or len(args) < len(get_args(ann))
            if len(args) != 1:
                return ann, optional
            ann = args[0]
        else:
            return ann, optional


def _model(ann: Any) -> type[BaseModel] | None:
    inner, _ = _unwrap(ann)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _fields(model: type[BaseModel]) -> list[FieldInfo]:
    return list(model.model_fields.values())


def _is_secret(ann: Any) -> bool:
    return _unwrap(ann)[0] is SecretStr


def _wants_text(ann: Any) -> bool:
    inner, _ = _unwrap(ann)
    if get_origin(inner) is Literal:
        return all(isinstance(a, str) for a in get_args(inner))
    return inner in (str, SecretStr)


def resolve_files(raw: Mapping[str, Any], model: type[BaseModel], base: Path) -> dict[str, Any]:
    """``raw`` with every ``<secret>_file`` key replaced by the secret it names."""
    return _resolve(raw, model, base, ())


def _resolve(
    raw: Mapping[str, Any], model: type[BaseModel], base: Path, loc: tuple[int | str, ...]
) -> dict[str, Any]:
    out = dict(raw)
    for name, field in model.model_fields.items():
        ann, sub = field.annotation, _model(field.annotation)
        file_key = f"{name}_file"
        secret_table = sub is not None and all(_is_secret(f.annotation) for f in _fields(sub))
        # A *_file key beside a non-secret key is left for validation to reject as unknown.
        if file_key in out and (_is_secret(ann) or secret_table):
            paths = out.pop(file_key)
            if _is_secret(ann):
                out[name] = _merge_file(out, name, paths, base, (*loc, file_key))
                continue
            table = out.get(name, {})
            if not isinstance(table, dict) or not isinstance(paths, dict):
                raise ConfigError(format_key((*loc, file_key)), "must be a table of paths")
            table = dict(table)
            for key, path in paths.items():
                table[key] = _merge_file(table, key, path, base, (*loc, file_key, key))
            out[name] = table
            continue
        value = out.get(name)
        if sub is not None and isinstance(value, dict):
            out[name] = _resolve(value, sub, base, (*loc, name))
        elif get_origin(ann) is tuple and isinstance(value, list):
            item = _model(get_args(ann)[0])
            if item is not None:
                out[name] = [
                    _resolve(v, item, base, (*loc, name, i)) if isinstance(v, dict) else v
                    for i, v in enumerate(value)
                ]
    return out


def _merge_file(
    table: Mapping[str, Any],
    key: str,
    path: Any,
    base: Path,
    loc: tuple[int | str, ...],
) -> str:
    where = format_key(loc)
    if key in table:
        raise ConfigError(where, "the secret is also given inline; give one of them")
    if not isinstance(path, str) or not path:
        raise ConfigError(where, "must be a file path")
    return read_secret_file(base / secret_path(path, where), where)  # absolute replaces base


def apply_env(
    raw: Mapping[str, Any], environ: Mapping[str, str], model: type[BaseModel]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``raw`` with ``SENTINEL_*`` overrides, and which variable set each dotted key."""
    out: dict[str, Any] = copy.deepcopy(dict(raw))
    origins: dict[str, str] = {}
    names = [
        n
        for n in environ
        if n.startswith(ENV_PREFIX) and n != CONFIG_PATH_ENV and not is_service_link(n)
    ]
    # Natural order, so HEARTBEAT_2 is appended before HEARTBEAT_10 needs it.
    for name in sorted(names, key=_natural):
        from_file = name.endswith("_FILE") and not _names_a_key(model, name)
        target = name[:-5] if from_file else name
        if from_file and target in environ:
            raise ConfigError(name, f"{target} is set too; give one of them")
        loc, ann = _target(model, target[len(ENV_PREFIX) :], name)
        if from_file:
            if not _is_secret(ann):
                raise ConfigError(name, "only secrets can be read from a file")
            value: Any = read_secret_file(secret_path(environ[name], name), name)
        else:
            value = _convert(environ[name], ann)
        _set(out, loc, value, name)
        origins[format_key(loc)] = name
    return out, origins


def is_service_link(name: str) -> bool:
    """True for the variables Kubernetes sets for a Service named ``sentinel``."""
    return _SERVICE_LINKS.fullmatch(name) is not None


def _names_a_key(model: type[BaseModel], name: str) -> bool:
    """Whether ``name`` sets a key of its own (``[learning] history_file``), not a secret's file."""
    try:
        _target(model, name[len(ENV_PREFIX) :], name)
    except ConfigError:
        return False
    return True


def _natural(name: str) -> list[tuple[int, str]]:
    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", name)]


def _target(model: type[BaseModel], rest: str, name: str) -> tuple[tuple[int | str, ...], Any]:
    """The key path a variable name denotes, and the annotation of that key."""
    loc: list[int | str] = []
    ann: Any = model
    while rest:
        inner, _ = _unwrap(ann)
        sub = _model(inner)
        indexed = _INDEXED.fullmatch(rest)
        if sub is not None:
            field = _match_field(sub, rest.lower())
            if field is None:
                raise ConfigError(
                    name, f"unknown setting: no key {format_key((*loc, rest.lower()))}"
                )
            loc.append(field)
            ann = sub.model_fields[field].annotation
            rest = rest[len(field) + 1 :]
        elif get_origin(inner) is tuple and indexed is not None:
            loc.append(int(indexed[1]))
            ann, rest = get_args(inner)[0], indexed[2]
        elif get_origin(inner) in (Mapping, dict):
            loc.append(rest.lower())
            ann, rest = get_args(inner)[1], ""
        else:
            raise ConfigError(name, f"unknown setting: {format_key(loc)} has no key {rest!r}")
    if not loc:
        raise ConfigError(name, "unknown setting")
    return tuple(loc), ann


def _match_field(model: type[BaseModel], rest: str) -> str | None:
    for field in sorted(model.model_fields, key=len, reverse=True):
        if rest == field or rest.startswith(field + "_"):
            return field
    return None


def _convert(text: str, ann: Any) -> Any:
    _, optional = _unwrap(ann)
    if text == "" and optional:
        return None
    if _wants_text(ann) or "\n" in text:
        return text
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # validation then names the key and the expected type
    return value if isinstance(value, bool | int | float | str | dict | list) else text


def _set(out: dict[str, Any], loc: tuple[int | str, ...], value: Any, name: str) -> None:
    node: Any = out
    for depth, key in enumerate(loc):
        last = depth == len(loc) - 1
        fresh: Any = value if last else ([] if isinstance(loc[depth + 1], int) else {})
        if isinstance(key, int):
            if key > len(node):
                raise ConfigError(name, f"entry {key} leaves a gap: the next index is {len(node)}")
            if key == len(node):
                node.append(fresh)
            elif last:
                node[key] = value
        elif last or key not in node:
            node[key] = fresh
        if not last:
            node = node[key]
            if not isinstance(node, type(fresh)):
                kind = "an array" if isinstance(fresh, list) else "a table"
                raise ConfigError(name, f"{format_key(loc[: depth + 1])} is not {kind}")
