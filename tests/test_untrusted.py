"""The one escaping of untrusted ids: printable, bounded, and distinct ids never
share a label."""

from __future__ import annotations

import json

import pytest
from tenant_ticks import HOSTILE_TENANTS

from stream_sentinel import untrusted


def _printable(text: str) -> bool:
    return all(" " <= c <= "~" for c in text)


@pytest.mark.parametrize("value", HOSTILE_TENANTS)
def test_label_is_printable_ascii_bounded_and_markup_free(value: str) -> None:
    text = untrusted.label(value)
    assert _printable(text)
    assert len(text) <= untrusted.LABEL_CHARS
    assert not set(text) & set("<>&\n\r")


def test_short_labels_decode_back_to_the_value() -> None:
    for value in HOSTILE_TENANTS:
        text = untrusted.label(value)
        if len(text) < untrusted.LABEL_CHARS:
            assert json.loads(f'"{text}"') == value


def test_distinct_values_get_distinct_labels_even_when_cut() -> None:
    near = [*HOSTILE_TENANTS, *(f"{'p' * 200}{i}" for i in range(500))]
    near += ["é" * n for n in range(1, 60)]  # escapes of six characters at every cut point
    labels = [untrusted.label(v) for v in near]
    assert len(set(labels)) == len(set(near))


def test_a_cut_label_is_longer_than_any_uncut_one() -> None:
    keep = untrusted.LABEL_CHARS - untrusted.HASH_HEX - 1
    assert untrusted.label("a" * keep) == "a" * keep
    cut = untrusted.label("a" * (keep + 1))
    assert len(cut) == untrusted.LABEL_CHARS and cut.startswith("a" * keep + "~")


def test_a_cut_never_ends_inside_an_escape() -> None:
    for n in range(40, 70):
        text = untrusted.label("é" * n)
        prefix = text[: -untrusted.HASH_HEX - 1].rstrip("~")
        json.loads(f'"{prefix}"')  # a dangling backslash or half \\u escape would raise


def test_quoted_matches_the_user_id_escaping_of_alerts() -> None:
    assert untrusted.quoted('a"<b>') == '"a\\"\\u003cb\\u003e"'
    assert untrusted.quoted("x" * 100) == '"' + "x" * 64 + '..."'


def test_a_too_small_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        untrusted.label("x", max_chars=13)
