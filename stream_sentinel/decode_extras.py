"""Rows that name a stream's extra fields, learned from its own messages.

Producers add fields of their own to every event: a trace id, a region, a
client object. Rows that skip unknown fields leave undone three checks orjson
makes on them (valid UTF-8, numbers within a double, nesting depth), so
``decode_rows`` must search every skipped-over message for what could fail
them: about half the cost of decoding such a stream. But a stream sends the
same few extra fields in every message. Once a message has shown them, rows
that name them decode them too, in C, as values of a type msgspec checks the
way orjson does:

- strings: UTF-8 and escapes (a lone surrogate) are checked;
- numbers: read as doubles, refused beyond a double's range as orjson
  refuses them (a 309-digit integer too);
- true, false, null;
- objects and arrays of those, two levels deep: the depth is bounded by the type.

A message with a field not yet seen, or a value of another shape, is refused
by these rows; the caller then decodes it as before and may learn from it.
``tests/test_decode_extras.py`` checks, value by value and at the edges of a
double, that msgspec takes an extra value of this type only where orjson
takes it.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from .events import EventType

# the most extra fields one topic's rows name; a stream with more (or fields
# that change from message to message) keeps the rows that skip them
MAX_EXTRA_FIELDS = 32
# a longer field name is not learned: names are kept for the topic's lifetime
MAX_NAME_CHARS = 128
# msgspec cannot name a field with these (its names are written unescaped)
_UNNAMEABLE = frozenset('"\\' + "".join(map(chr, range(0x20))))

Scalar = str | float | bool | None
Inner = Scalar | dict[str, Scalar] | list[Scalar]
ExtraValue = Scalar | dict[str, Inner] | list[Inner]


class ExtraFields:
    """The extra field names one topic's messages have shown, and a decoder
    for rows with those fields (each optional) and no others.

    An extra field seen holding an object is decoded into a struct naming
    the members seen (a dict costs more than a struct): a message with
    another member is refused like one with another field, and learned from.
    ``decoder`` is None until a message has been learned from. Field and
    member names come from messages (untrusted): they are only compared with
    other messages' names, never logged.
    """

    __slots__ = ("_contract", "_members", "_names", "_rows", "decoder")

    def __init__(
        self, topic_type: EventType | None, request_row: type[Any], response_row: type[Any]
    ) -> None:
        fields = [*msgspec.structs.fields(request_row), *msgspec.structs.fields(response_row)]
        self._contract = frozenset(["type", *(field.encode_name for field in fields)])
        self._rows: list[tuple[type[Any], str]] = []
        if topic_type != "response":
            self._rows.append((request_row, "request"))
        if topic_type != "request":
            self._rows.append((response_row, "response"))
        self._names: tuple[str, ...] = ()
        # extra field -> the members of the objects it held (None: decoded
        # as a dict, their names were not ones to learn); absent: no object yet
        self._members: dict[str, tuple[str, ...] | None] = {}
        self.decoder: msgspec.json.Decoder[Any] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def members(self, name: str) -> tuple[str, ...] | None:
        """The members learned for the objects of extra field ``name``, if any."""
        return self._members.get(name)

    def learn(self, doc: dict[str, Any]) -> None:
        """Name the extra fields of ``doc`` (a message orjson accepted) too,
        and the members of its objects.

        Past ``MAX_EXTRA_FIELDS`` the names seen so far are dropped for this
        message's; a message with more than that, or a name msgspec cannot
        match, is not learned from: its kind keeps the rows that skip."""
        extra = [name for name in doc if name not in self._contract]
        if not all(map(_nameable, extra)):
            return
        names = (*self._names, *(name for name in extra if name not in self._names))
        if len(names) > MAX_EXTRA_FIELDS:
            if len(extra) > MAX_EXTRA_FIELDS:
                return
            names = tuple(extra)
        members = {name: self._members[name] for name in names if name in self._members}
        for name in extra:
            value = doc[name]
            known = members.get(name, ())
            if type(value) is dict and known is not None:
                more = [member for member in value if member not in known]
                merged = (*known, *more)
                fits = len(merged) <= MAX_EXTRA_FIELDS and all(map(_nameable, more))
                members[name] = merged if fits else None
        if names == self._names and members == self._members:
            return
        try:
            rows = [_naming(row, tag, names, members) for row, tag in self._rows]
        except (ValueError, TypeError):  # a name msgspec refuses after all
            return
        self._names, self._members = names, members
        union: Any = rows[0] if len(rows) == 1 else rows[0] | rows[1]
        self.decoder = msgspec.json.Decoder(union)


def _nameable(name: str) -> bool:
    return len(name) <= MAX_NAME_CHARS and _UNNAMEABLE.isdisjoint(name)


def _naming(
    row: type[Any], tag: str, names: tuple[str, ...], members: dict[str, tuple[str, ...] | None]
) -> type[Any]:
    """``row`` with ``names`` as optional fields and no unknown field allowed."""
    attributes = [f"extra_{i}" for i in range(len(names))]
    return msgspec.defstruct(
        f"{row.__name__}WithExtras",
        [
            (attribute, _value_type(members.get(name)), None)
            for attribute, name in zip(attributes, names, strict=True)
        ],
        bases=(row,),
        rename=dict(zip(attributes, names, strict=True)),
        tag=tag,
        tag_field="type",
        forbid_unknown_fields=True,
        kw_only=True,
        gc=False,
    )


def _value_type(members: tuple[str, ...] | None) -> Any:
    """``ExtraValue``, with its objects as a struct naming ``members``: the
    same values at the same depth, only members not named refused too."""
    if members is None:
        return ExtraValue
    attributes = [f"member_{i}" for i in range(len(members))]
    nested = msgspec.defstruct(
        "ExtraObject",
        [(attribute, Inner, None) for attribute in attributes],
        rename=dict(zip(attributes, members, strict=True)),
        forbid_unknown_fields=True,
        kw_only=True,
        gc=False,
    )
    return Union[nested, Scalar, list[Inner]]  # noqa: UP007 (a type made at run time)
