"""Hot SQLAlchemy Core statements sent straight to the driver on SQLite.

Through the ORM session a statement costs tens of microseconds of SQLAlchemy machinery
(session, result and row objects, cache-key lookup) while SQLite itself takes a few. For the
few statements every tool call runs, ``Direct`` keeps the statement written in SQLAlchemy Core
(built once, with ``bindparam``\\ s) and does SQLAlchemy's per-call work once:

* on SQLite it compiles the statement once per dialect and keeps the SQL, the order of its
  positional parameters, the values of its literal binds and each bind's processor (a
  ``TypeDecorator``'s ``process_bind_param``, ``Boolean``, ``DateTime``...), so the driver gets
  exactly the parameters SQLAlchemy would send. The statement runs on the unit of work's own
  driver connection, in its transaction; pending ORM changes are flushed first, as the
  session's autoflush would, and errors are raised as SQLAlchemy raises them
  (``IntegrityError``, ``StatementError``...);
* on PostgreSQL it is compiled the same way and sent on the unit of work's asyncpg
  connection, inside the transaction SQLAlchemy's asyncpg adapter manages (begun first if
  the statement is the transaction's first, under the adapter's own lock), with errors
  translated as the adapter translates them. This uses the adapter's private attributes
  (``_execute_mutex``, ``_transaction``, ``_start_transaction``, ``_connection``,
  ``_handle_exception``) of the pinned SQLAlchemy version; the tests run every direct
  statement on PostgreSQL.

With the engine's ``echo`` on (``AGENT_SERVER_DATABASE_ECHO``), each statement is logged on
the engine's logger, marked ``[direct]``, as SQLAlchemy logs its own (parameters hidden when
the engine hides them).

Rows come back as ``NamedRow``\\ s (``store.rows``): tuples whose columns are attributes too,
named as the statement names them, with the values as the driver gives them: on SQLite no result
processing happens (booleans are 0 and 1, timestamps are text), so use ``Direct`` only for
statements whose result columns need none (integers, strings, NULL; truth values read as
such). Build DML on the ``Table``, not the mapped class, so the session runs the same Core
statement on PostgreSQL. Statements that need SQLAlchemy at execution time are refused when
compiled: expanding (``IN``) or literal-execute parameters, callable binds, Python-side
column defaults SQLAlchemy would compute (give every column a value) and bind names that need
escaping.

Every shortcut here is optional (``store.shortcuts``): with ``Database.direct`` off
(``AGENT_SERVER_DATABASE_SHORTCUTS=off``, or internals missing from the installed SQLAlchemy)
the same statement runs through the unit of work's ORM session, with the same rows, counts and
errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, cast
from weakref import WeakKeyDictionary

from sqlalchemy import Table, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError
from sqlalchemy.sql import ClauseElement, Executable, Insert

from agent_server.kernel.store.rows import NamedRow, column_names, named, row_class
from agent_server.kernel.store.shortcuts import (
    asyncpg_error,
    missing_asyncpg_internals,
    unavailable,
)
from agent_server.kernel.store.uow import UnitOfWork

_REQUIRED: Any = object()
"""The default of a bind that has no value: the caller must give one."""


@dataclass(frozen=True, slots=True)
class _Slot:
    """One positional parameter: where its value comes from and how it is processed."""

    key: str  # the bindparam's key, looked up in the call's parameters first...
    name: str  # ...then its compiled name, as SQLAlchemy does
    default: Any  # the bind's own value, or _REQUIRED
    process: Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class CompiledDirect:
    """A statement compiled for one dialect: its SQL and how to build its parameters."""

    sql: str
    slots: tuple[_Slot, ...]
    dml: bool
    keys: frozenset[str]  # the parameter names a DML statement takes (empty for others)

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional parameters the driver gets for ``params``, processed."""
        if self.dml and not self.keys.issuperset(params):
            # An INSERT or UPDATE run through SQLAlchemy would add a column for such a key.
            unknown = sorted(set(params) - self.keys)
            raise ArgumentError(f"parameters the statement does not take: {unknown}")
        values: list[Any] = []
        for slot in self.slots:
            if slot.key in params:
                value = params[slot.key]
            elif slot.name in params:
                value = params[slot.name]
            elif slot.default is _REQUIRED:
                raise InvalidRequestError(
                    f"A value is required for bind parameter {slot.key!r}", code="cd3x"
                )
            else:
                value = slot.default
            values.append(value if slot.process is None else slot.process(value))
        return values


def compile_direct(statement: Executable, dialect: Dialect) -> CompiledDirect:
    """``statement`` compiled for ``dialect`` (a positional one, such as SQLite's)."""
    compiled: Any = cast(ClauseElement, statement).compile(dialect=dialect)
    if not compiled.positional or compiled.positiontup is None:
        raise ArgumentError(f"{dialect.name} does not take positional parameters")
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise ArgumentError("expanding and literal-execute parameters are not supported")
    if getattr(compiled, "insert_prefetch", ()) or getattr(compiled, "update_prefetch", ()):
        raise ArgumentError("give every column a value: column defaults are not computed")
    if compiled.escaped_bind_names:
        raise ArgumentError("bind names that need escaping are not supported")
    binds: dict[str, Any] = {}
    processors: dict[str, Callable[[Any], Any]] = {}
    for bind, name in compiled.bind_names.items():
        if bind.callable is not None:
            raise ArgumentError(f"callable bind {bind.key!r} is not supported")
        binds[name] = bind
        # What SQLAlchemy applies: the processor of the type's implementation for the dialect.
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors[name] = process
    slots = tuple(
        _slot(
            binds[name].key,
            name,
            _REQUIRED if binds[name].required else binds[name].value,
            processors.get(name),
        )
        for name in compiled.positiontup
    )
    dml = bool(compiled.isinsert or compiled.isupdate or compiled.isdelete)
    return CompiledDirect(
        sql=str(compiled),
        slots=slots,
        dml=dml,
        # Only DML checks its parameters' names (``arguments``).
        keys=frozenset(
            key for bind, name in compiled.bind_names.items() for key in (bind.key, name)
        )
        if dml
        else frozenset(),
    )


def _slot(key: str, name: str, default: Any, process: Callable[[Any], Any] | None) -> _Slot:
    if default is not _REQUIRED or process is not None:
        return _Slot(key, name, default, process)
    return _plain_slot(key, name)


@cache
def _plain_slot(key: str, name: str) -> _Slot:
    """The slot of a required bind without a processor, shared by every statement that has
    one by that name: the search's statements bind lists of up to hundreds of ids each."""
    return _Slot(key, name, _REQUIRED, None)


def column_binds(table: Table, names: Iterable[str]) -> dict[str, Any]:
    """A bind parameter per named column of ``table``, named and typed as the column (so its
    values are processed as the ORM's would be): the ``values()`` of a ``Direct`` insert."""
    return {name: bindparam(name, type_=table.c[name].type) for name in names}


class Direct:
    """A Core statement (built once, with ``bindparam``\\ s) for ``direct_rows`` and
    ``direct_execute``; compiled once per dialect, on first use.

    Given ``rebuild`` (what built the statement), the statement's tree is let go once it is
    compiled and built again only if it is needed again (another dialect, or the session's
    way with the shortcuts off): a process keeping many large statements (the search's, one
    per shape) keeps their SQL, not their trees, which take about three times as much."""

    __slots__ = ("_compiled", "_last", "_ordinary", "_rebuild", "_statement", "returns_rows", "row")

    def __init__(
        self, statement: Executable, rebuild: Callable[[], Executable] | None = None
    ) -> None:
        dml: Any = statement
        # A SELECT, or an INSERT, UPDATE or DELETE with RETURNING.
        self.returns_rows = not dml.is_dml or len(dml.exported_columns) > 0
        self.row: type[NamedRow] = row_class(column_names(statement))
        self._statement: Executable | None = statement
        self._ordinary: Executable | None = None
        self._rebuild = rebuild
        self._last: tuple[Dialect, CompiledDirect] | None = None
        self._compiled: WeakKeyDictionary[Dialect, CompiledDirect] = WeakKeyDictionary()

    @property
    def statement(self) -> Executable:
        """The Core statement (built again if its tree was let go)."""
        found = self._statement
        if found is None:
            assert self._rebuild is not None
            found = self._rebuild()
        return found

    @property
    def ordinary(self) -> Executable:
        """The statement as the session runs it when the shortcut is off (kept once asked
        for). An INSERT without RETURNING made inline: else on PostgreSQL SQLAlchemy adds
        RETURNING for the new primary key and the driver no longer counts the rows inserted."""
        found = self._ordinary
        if found is None:
            statement: Any = self.statement
            found = self._ordinary = (
                statement.inline()
                if isinstance(statement, Insert) and not self.returns_rows
                else statement
            )
        return found

    def compiled(self, dialect: Dialect) -> CompiledDirect:
        """The statement compiled for ``dialect`` (kept per dialect)."""
        last = self._last
        if last is not None and last[0] is dialect:
            return last[1]
        found = self._compiled.get(dialect)
        if found is None:
            found = self._compiled[dialect] = compile_direct(self.statement, dialect)
            if self._rebuild is not None:
                self._statement = None
        self._last = (dialect, found)
        return found

    def __repr__(self) -> str:
        return f"Direct({self.statement})"


async def _autoflush(uow: UnitOfWork) -> None:
    """Flush pending ORM changes first, as the session would before a statement of its own.

    Asks the sync session whether it is clean (its private ``_is_clean``, in the pinned
    SQLAlchemy), as its own ``flush`` does first: the async session's ``new``, ``dirty`` and
    ``deleted`` build a set each through the proxy. A unit of work without a session has
    nothing to flush."""
    if not uow.has_session:
        return
    session = uow.session
    sync = session.sync_session
    if sync.autoflush and not sync._is_clean():
        await session.flush()


async def _flushed_driver(uow: UnitOfWork) -> tuple[Dialect, Any]:
    await _autoflush(uow)
    return await uow.driver_connection()


async def direct_rows(uow: UnitOfWork, direct: Direct, params: Mapping[str, Any]) -> list[NamedRow]:
    """Run ``direct`` in ``uow``'s transaction; its rows, named, with driver values (see the
    module's docstring)."""
    if not uow.db.direct:
        return await _session_rows(uow, direct, params)
    if not uow.db.is_sqlite:
        rows = await _on_asyncpg(uow, direct, params, fetch=True)
        assert isinstance(rows, list)
        return rows
    dialect, driver = await _flushed_driver(uow)
    compiled = direct.compiled(dialect)
    try:
        arguments = compiled.arguments(params)
        if uow.db.echo:
            _echo(uow, compiled, arguments)
        return named(direct.row, await driver.execute_fetchall(compiled.sql, arguments))
    except Exception as exc:
        raise _as_sqlalchemy_raises(uow, exc, dialect, compiled, params) from exc


async def direct_execute(uow: UnitOfWork, direct: Direct, params: Mapping[str, Any]) -> int:
    """Run ``direct`` in ``uow``'s transaction; how many rows it changed (for a statement
    that returns rows, how many it returned)."""
    if not uow.db.direct:
        return await _session_count(uow, direct, params)
    if not uow.db.is_sqlite:
        done = await _on_asyncpg(uow, direct, params, fetch=direct.returns_rows)
        return len(done) if isinstance(done, list) else done
    dialect, driver = await _flushed_driver(uow)
    compiled = direct.compiled(dialect)
    try:
        arguments = compiled.arguments(params)
        if uow.db.echo:
            _echo(uow, compiled, arguments)
        if direct.returns_rows:
            return len(await driver.execute_fetchall(compiled.sql, arguments))
        cursor = await driver.execute(compiled.sql, arguments)
        try:
            return int(cursor.rowcount)
        finally:
            await cursor.close()
    except Exception as exc:
        raise _as_sqlalchemy_raises(uow, exc, dialect, compiled, params) from exc


def _echo(uow: UnitOfWork, compiled: CompiledDirect, arguments: list[Any]) -> None:
    """Log the statement as the engine's ``echo`` logs its own: its parameters too, unless
    the engine hides them (``store.engine`` engines do)."""
    engine = uow.db.engine.sync_engine
    engine.logger.info("%s", compiled.sql)
    if engine.hide_parameters:
        engine.logger.info("[direct] [SQL parameters hidden due to hide_parameters=True]")
    else:
        engine.logger.info("[direct] %r", tuple(arguments))


async def _session_rows(
    uow: UnitOfWork, direct: Direct, params: Mapping[str, Any]
) -> list[NamedRow]:
    """The ordinary way: ``direct``'s rows through the ORM session (which flushes first)."""
    result = await uow.session.execute(direct.ordinary, dict(params))
    return named(direct.row, result.all())


async def _session_count(uow: UnitOfWork, direct: Direct, params: Mapping[str, Any]) -> int:
    """The ordinary way: how many rows ``direct`` changed (or returned), through the ORM
    session."""
    result: Any = await uow.session.execute(direct.ordinary, dict(params))
    if result.returns_rows:
        return len(result.all())
    return max(int(result.rowcount), 0)  # a statement such as SET counts no rows


async def _on_asyncpg(
    uow: UnitOfWork, direct: Direct, params: Mapping[str, Any], *, fetch: bool
) -> list[NamedRow] | int:
    """PostgreSQL: the rows (``fetch``) or the count of rows changed."""
    await _autoflush(uow)
    dialect, adapter = await uow.dbapi_connection()
    missing = missing_asyncpg_internals(adapter)
    if missing:
        unavailable("direct", missing)
        uow.db.direct = False
        return await (_session_rows if fetch else _session_count)(uow, direct, params)
    compiled = direct.compiled(dialect)
    try:
        arguments = compiled.arguments(params)
    except Exception as exc:
        raise _as_sqlalchemy_raises(uow, exc, dialect, compiled, params) from exc
    if uow.db.echo:
        _echo(uow, compiled, arguments)
    try:
        async with adapter._execute_mutex:
            if adapter._transaction is None:
                await adapter._start_transaction()
            if fetch:
                return named(direct.row, await adapter._connection.fetch(compiled.sql, *arguments))
            status: str = await adapter._connection.execute(compiled.sql, *arguments)
    except Exception as exc:
        raise _as_sqlalchemy_raises(
            uow, asyncpg_error(adapter, dialect, exc), dialect, compiled, params
        ) from exc
    # "INSERT 0 1", "UPDATE 3", "DELETE 0": the count is the last word.
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def _as_sqlalchemy_raises(
    uow: UnitOfWork,
    exc: Exception,
    dialect: Dialect,
    compiled: CompiledDirect,
    params: Mapping[str, Any],
) -> BaseException:
    """The error SQLAlchemy raises for ``exc``: the driver's errors as their
    ``sqlalchemy.exc`` class (``IntegrityError``...), any other as a ``StatementError``; its
    message shows the parameters only if the engine's would."""
    return DBAPIError.instance(
        compiled.sql,
        dict(params),
        exc,
        dialect.loaded_dbapi.Error,
        hide_parameters=uow.db.engine.sync_engine.hide_parameters,
        dialect=dialect,
    )
