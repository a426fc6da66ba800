"""The vector selectors of a PromQL expression: metric names and label matchers.

Enough of PromQL's lexical grammar to tell a metric name from everything else
that looks like an identifier: function and aggregation names (followed by
``(``), keywords and set operators, label lists of ``by``/``without``/``on``/
``ignoring``/``group_left``/``group_right``, label names and values inside
``{...}``, string arguments (``label_replace(x, "dst", "$1", ...)``), range and
subquery brackets, durations, numbers, and Grafana variables such as
``$__rate_interval``. Used to check that dashboards and alert rules only query
series the service exports; a hand-written list of names would drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<var>\$\{[^}]*\}|\$\w+|\[\[\w+\]\])
    | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)(?![\w.])
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<matchop>=~|!~|!=|==|<=|>=|=)
    | (?P<punct>[(){}\[\],+\-*/%^<>@])
    """,
    re.VERBOSE,
)

# Followed by a parenthesised list of label names, not by an expression.
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}) | GROUPING
# May be followed by a grouping clause before their parentheses: ``sum by (le) (...)``.
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)
MATCH_OPS = frozenset({"=", "!=", "=~", "!~"})


@dataclass(frozen=True)
class Selector:
    name: str
    # (label, operator, value) for every matcher in the braces, __name__ excluded
    matchers: tuple[tuple[str, str, str], ...] = field(default=())

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(label for label, _, _ in self.matchers)


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot tokenise PromQL at {pos}: {expr[pos : pos + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("ws", "comment"):
            out.append((kind, match.group()))
        pos = match.end()
    return out


def _unquote(text: str) -> str:
    body = text[1:-1]
    return body if text[0] == "`" else re.sub(r"\\(.)", r"\1", body)


def _matchers(toks: list[tuple[str, str]], i: int) -> tuple[list[tuple[str, str, str]], int]:
    """Parse ``{label op "value", ...}`` starting at the ``{``; returns the index after ``}``."""
    assert toks[i] == ("punct", "{")
    i += 1
    found: list[tuple[str, str, str]] = []
    while toks[i] != ("punct", "}"):
        if toks[i] == ("punct", ","):
            i += 1
            continue
        (kind, label), (_, op), (vkind, value) = toks[i], toks[i + 1], toks[i + 2]
        if kind != "ident" or op not in MATCH_OPS or vkind != "string":
            raise ValueError(f"bad label matcher near {label!r}")
        found.append((label, op, _unquote(value)))
        i += 3
    return found, i + 1


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in ``expr``, in order of appearance."""
    toks = tokens(expr)
    out: list[Selector] = []
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ("", "")
        if kind == "punct" and text == "[":
            # range or subquery: durations, a colon, variables; nothing to name
            while toks[i] != ("punct", "]"):
                i += 1
            i += 1
        elif kind == "punct" and text == "{":
            # a selector without a leading name: {__name__="x", ...}
            found, i = _matchers(toks, i)
            names = [v for label, op, v in found if label == "__name__" and op == "="]
            if len(names) != 1:
                raise ValueError("a selector without a metric name")
            out.append(Selector(names[0], tuple(m for m in found if m[0] != "__name__")))
        elif kind == "ident" and text in GROUPING and nxt == ("punct", "("):
            while toks[i] != ("punct", ")"):
                i += 1
            i += 1
        elif kind == "ident" and (
            text.lower() in KEYWORDS
            or nxt == ("punct", "(")
            or (text in AGGREGATIONS and nxt[0] == "ident" and nxt[1] in GROUPING)
        ):
            i += 1  # keyword, operator, or a function / aggregation name
        elif kind == "ident":
            if nxt == ("punct", "{"):
                found, i = _matchers(toks, i + 1)
                out.append(Selector(text, tuple(found)))
            else:
                out.append(Selector(text))
                i += 1
        else:
            i += 1
    return out


def metric_names(expr: str) -> set[str]:
    return {s.name for s in selectors(expr)}
