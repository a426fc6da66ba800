"""Untrusted ids (user ids, tenants) made safe to show: one place, two forms.

Both forms are printable ASCII: JSON string escaping turns quotes, backslashes,
control characters and every non-ASCII character (bidi overrides, zero-width
spaces, look-alikes) into ``\\uXXXX``, and ``<``, ``>``, ``&`` are escaped too,
so a receiver that renders HTML or markdown cannot be handed a tag or a link.

- :func:`quoted` is for prose (annotations, notes): a JSON-quoted token, cut
  with ``..."`` when long. Two long ids may look the same there.
- :func:`label` is for identities (a Prometheus or Alertmanager label, a log
  field): unquoted and bounded, and *injective*: an id that does not fit is cut
  and given a hash suffix, and every cut form is longer than any uncut one, so
  two different ids never share a label (short of a 48-bit hash collision
  between two cut ids).
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

QUOTED_CHARS: Final = 64  # characters of the raw id kept by ``quoted``
LABEL_CHARS: Final = 64  # the longest ``label`` returns
HASH_HEX: Final = 12  # 48 bits of SHA-256
CUT_MARK: Final = "~"


def _ascii(text: str) -> str:
    """``text`` as the inside of a JSON string, ASCII only, markup-free."""
    body = json.dumps(text, ensure_ascii=True)[1:-1]
    return body.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def quoted(value: str, max_chars: int = QUOTED_CHARS) -> str:
    """``value`` as a quoted, escaped token of at most ``max_chars`` raw characters."""
    cut = value[:max_chars]
    text = f'"{_ascii(cut)}"'
    return text if cut == value else text[:-1] + '..."'


def label(value: str, max_chars: int = LABEL_CHARS) -> str:
    """``value`` escaped and bounded to ``max_chars``; distinct values stay distinct.

    Escaped forms of up to ``max_chars - HASH_HEX - 1`` characters are kept as
    they are; longer ones become their first characters, ``~`` and a hash of the
    raw value, exactly ``max_chars`` long.
    """
    keep = max_chars - HASH_HEX - len(CUT_MARK)
    if keep < 1:
        raise ValueError(f"max_chars must exceed {HASH_HEX + len(CUT_MARK)}")
    text = _ascii(value)
    if len(text) <= keep:
        return text
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX]
    return _whole_escapes(text, keep).ljust(keep, CUT_MARK) + CUT_MARK + digest


def _whole_escapes(text: str, keep: int) -> str:
    """The longest prefix of ``text`` within ``keep`` characters that does not end
    inside an escape (a dangling backslash would escape whatever a renderer puts next)."""
    end = 0
    while end < len(text):
        step = (6 if text[end + 1 : end + 2] == "u" else 2) if text[end] == "\\" else 1
        if end + step > keep:
            break
        end += step
    return text[:end]
