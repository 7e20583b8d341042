"""Rows with names: what ``direct_rows`` returns.

A ``NamedRow`` is a tuple, so ``row[0]``, unpacking and comparing with a plain tuple work as
they always did, and each result column is also an attribute named as the statement names it
(``select(Agent.id, Agent.currency)`` gives ``row.id`` and ``row.currency``; a labelled
expression gives its label). Each statement gets its own row class, built once from its
columns, with the attributes as fast as a ``namedtuple``'s.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable, Sequence
from functools import cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy.sql import Executable


class NamedRow(tuple[Any, ...]):
    """One result row: a tuple whose columns are attributes too (``row.balance``)."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    if TYPE_CHECKING:  # the columns are attributes of each statement's own row class

        def __getattr__(self, name: str) -> Any: ...

    def _asdict(self) -> dict[str, Any]:
        """The named columns and their values."""
        return {name: self[i] for i, name in enumerate(self._fields) if name}

    def __repr__(self) -> str:
        names = self._fields + ("",) * (len(self) - len(self._fields))
        shown = (
            f"{name}={value!r}" if name else repr(value)
            for name, value in zip(names, self, strict=False)
        )
        return f"Row({', '.join(shown)})"


def _attribute_name(name: str) -> str:
    """``name`` when it can be an attribute of a row, else "" (the column is read by index)."""
    usable = (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith("_")
        and not hasattr(tuple, name)
    )
    return name if usable else ""


def row_class(names: Sequence[str]) -> type[NamedRow]:
    """A row class whose attribute ``names[i]`` reads column ``i``; statements naming the same
    columns share one (a class takes about a kilobyte, and the search keeps hundreds of
    statements)."""
    return _row_class(tuple(_attribute_name(name) for name in names))


@cache
def _row_class(fields: tuple[str, ...]) -> type[NamedRow]:
    attributes: dict[str, Any] = {"__slots__": (), "_fields": fields}
    for i, name in enumerate(fields):
        if name and name not in attributes:
            attributes[name] = property(itemgetter(i), doc=f"Column {i}")
    return type("Row", (NamedRow,), attributes)


def column_names(statement: Executable) -> list[str]:
    """The names of the columns ``statement`` returns (none for a ``text()`` without
    ``.columns()``, whose rows are read by index)."""
    columns: Any = getattr(statement, "selected_columns", None)
    if columns is None:
        columns = getattr(statement, "exported_columns", None)
    return [] if columns is None else [str(key) for key in columns.keys()]


def named(row_type: type[NamedRow], rows: Iterable[Sequence[Any]]) -> list[NamedRow]:
    """``rows`` as ``row_type`` rows."""
    return [row_type(row) for row in rows]
