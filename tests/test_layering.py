"""The store seam holds: nothing above ``store/`` knows which store it has.

Code outside ``stream_sentinel/store/`` reaches the store only through its
protocols (``store.base``, ``store.history``, ``store.lease``) and the one
builder (``store.build``): it imports no implementation, tests no instance
against one, and touches no client or key prefix. Read from the source (the
AST), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "stream_sentinel"
SEAM_MODULES = frozenset({"base", "build", "history", "lease"})
IMPLEMENTATIONS = frozenset(
    {"RedisStore", "MemoryStore", "RedisHistory", "MemoryHistory", "RedisLease", "LocalLease"}
)
INTERNALS = frozenset({"client", "_client", "_r", "prefix", "_prefix"})


def _module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _absolute(node: ast.ImportFrom, here: list[str], is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here if is_package else here[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def violations(source: str, path: Path) -> list[str]:
    """Every way ``source`` (the module at ``path``) reaches past the store seam."""
    here = _module_name(path)
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        targets: list[tuple[str, list[str]]] = []
        if isinstance(node, ast.Import):
            targets = [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, here, path.name == "__init__.py")
            targets = [(module, [alias.name for alias in node.names])]
        for module, names in targets:
            parts = module.split(".")
            if parts[:2] == ["stream_sentinel", "store"]:
                inner = parts[2] if len(parts) > 2 else None
                if inner is None:
                    inner = next((n for n in names if n not in SEAM_MODULES), None)
                    names = []
                if inner is not None and inner not in SEAM_MODULES:
                    found.append(f"line {node.lineno}: imports stream_sentinel.store.{inner}")
                found += [f"line {node.lineno}: imports {n}" for n in names if n in IMPLEMENTATIONS]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "isinstance"
            and len(node.args) == 2
        ):
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
            if names & IMPLEMENTATIONS:
                found.append(f"line {node.lineno}: isinstance against a store implementation")
        if isinstance(node, ast.Attribute) and node.attr in INTERNALS:
            found.append(f"line {node.lineno}: reaches into .{node.attr}")
    return found


def _above_store() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if "store" not in p.relative_to(PACKAGE).parts[:1]
    )


def test_the_modules_above_the_store_were_found() -> None:
    names = {p.relative_to(PACKAGE).as_posix() for p in _above_store()}
    assert {"app.py", "wiring.py", "baselines.py", "cli/commands.py", "replay.py"} <= names
    assert not any(n.startswith("store/") for n in names)


@pytest.mark.parametrize("path", _above_store(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_nothing_above_the_store_knows_which_store_it_has(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), path) == []


@pytest.mark.parametrize(
    "source",
    [
        "from .store.redis import RedisStore",
        "from ..store.redis_client import connect",
        "from stream_sentinel.store import memory",
        "import stream_sentinel.store.redis_scripts",
        "from .store.history import RedisHistory",
        "from .store.build import open_storage\nisinstance(s, store_mod.RedisStore)",
        "def f(store):\n    return store.client.scan_iter()",
        "def f(store):\n    return store.prefix",
        "async def f():\n    from .store.lease import RedisLease",
    ],
)
def test_the_check_catches_each_kind_of_leak(source: str) -> None:
    where = PACKAGE / "cli" / "commands.py" if "..store" in source else PACKAGE / "app.py"
    assert violations(source, where)


def test_the_seam_itself_is_allowed() -> None:
    source = (
        "from .store.base import Store, StoreUnavailable\n"
        "from .store.build import Storage, open_storage\n"
        "from .store.history import History, TickRecord\n"
        "from .store.lease import Lease\n"
    )
    assert violations(source, PACKAGE / "app.py") == []
