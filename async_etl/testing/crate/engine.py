"""Executes one parsed statement against the stand-in's catalog and builds the response body.

Pure and single-threaded: the server calls ``Engine.run`` from the event loop without awaiting
in between, so each request is applied atomically with respect to the others.  The body it
returns has no ``duration`` yet (the server adds it).  Refusals are raised as ``CrateError``.

Bulk requests (``bulk_args``) go through the two phases of ``writes``: every item is analysed
first (a bad value fails the request, nothing written), then applied item by item, failed items
becoming ``{"rowcount": -2}`` with an ``error`` object for the first 10 failures per shard
(from 5.10.0).  Emulated versions below 5.10.11 turn a failed single-item bulk into a top-level
error instead.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable
from typing import Any

from async_etl.testing.crate import protocol
from async_etl.testing.crate.config import Counters
from async_etl.testing.crate.query import count_keys, predicate, run_select
from async_etl.testing.crate.sqlast import (
    WRITES,
    AlterTable,
    CreateTable,
    Delete,
    DropTable,
    Func,
    Insert,
    Noop,
    Param,
    Refresh,
    Select,
    ShowCreate,
    Star,
    Statement,
    SwapTable,
    Update,
)
from async_etl.testing.crate.store import Catalog, Table
from async_etl.testing.crate.systables import (
    NodeInfo,
    Relation,
    show_create,
    system_relation,
    table_relation,
)
from async_etl.testing.crate.writes import (
    InsertPlan,
    ItemError,
    UpdatePlan,
    delete_rows,
    matching_keys,
)

ItemRunner = Callable[[int, list[Any]], tuple[int, "ItemError | None"]]
_STATUS_BY_CODE_PREFIX = {"400": 400, "401": 401, "403": 403, "404": 404, "409": 409, "429": 429}


def _status_for(code: int) -> int:
    return _STATUS_BY_CODE_PREFIX.get(str(code)[:3], 500 if code < 5030 else 503)


def _ddl(rowcount: int) -> dict[str, Any]:
    return {"cols": [], "rows": [[]], "rowcount": rowcount}


def _dml(rowcount: int) -> dict[str, Any]:
    return {"cols": [], "rows": [], "rowcount": rowcount}


class Engine:
    """Runs statements for one stand-in; holds no I/O and no global state."""

    def __init__(self, catalog: Catalog, node: NodeInfo, counters: Counters) -> None:
        self.catalog = catalog
        self.node = node
        self.counters = counters
        self.version = protocol.parse_version(node.version)

    # -- entry point ---------------------------------------------------------------------
    def run(
        self,
        stmt: Statement,
        args: list[Any],
        bulk_args: list[Any] | None,
        schema: str,
        *,
        count_only: bool = False,
        item_fault: Callable[[], bool] | None = None,
        types: bool = False,
    ) -> dict[str, Any]:
        """Execute ``stmt``; the response body without ``duration``.

        Raises ``CrateError`` for anything CrateDB would answer with an error status.
        """
        if bulk_args is not None:
            return self._bulk(stmt, bulk_args, schema, count_only, item_fault)
        self._check_arity(stmt, args)
        if isinstance(stmt, Select):
            return self._select(stmt, args, schema, types)
        if isinstance(stmt, Insert):
            return self._insert(stmt, args, schema, count_only)
        if isinstance(stmt, Update):
            plan = UpdatePlan.build(self.catalog.get(stmt.table, schema), stmt)
            plan.analyse(args)
            count, error = plan.apply(args)
            if error is not None:
                raise protocol.CrateError(_status_for(error[0]), error[0], error[1])
            self.counters.rows_written += count
            return _dml(count)
        if isinstance(stmt, Delete):
            return _dml(delete_rows(self.catalog.get(stmt.table, schema), stmt.where, args))
        return self._other(stmt, schema)

    @staticmethod
    def _check_arity(stmt: Statement, args: list[Any]) -> None:
        if len(args) < stmt.param_count:
            raise protocol.parse_error(
                f"The query contains a parameter placeholder ${stmt.param_count}, "
                f"but there are only {len(args)} parameter values"
            )

    def _other(self, stmt: Statement, schema: str) -> dict[str, Any]:
        if isinstance(stmt, CreateTable):
            return _ddl(1 if self.catalog.create(stmt, schema) else 0)
        if isinstance(stmt, DropTable):
            return _ddl(1 if self.catalog.drop(stmt.table, schema, stmt.if_exists) else 0)
        if isinstance(stmt, SwapTable):
            self.catalog.swap(stmt.source, stmt.target, schema, drop_source=stmt.drop_source)
            return _ddl(1)
        if isinstance(stmt, AlterTable):
            table = self.catalog.get(stmt.table, schema)
            for column in stmt.add:
                table.add_column(column)
            for key, value in stmt.settings:
                if value is None:
                    table.settings.pop(key, None)
                else:
                    table.settings[key] = value
            return _ddl(-1)
        if isinstance(stmt, Refresh):
            tables = [self.catalog.get(name, schema) for name in stmt.tables]
            for table in tables:
                table.refresh()
            return _ddl(len(tables))
        if isinstance(stmt, ShowCreate):
            table = self.catalog.get(stmt.table, schema)
            head = f"SHOW CREATE TABLE {table.schema}.{table.name}"
            return {"cols": [head], "rows": [[show_create(table)]], "rowcount": 1}
        assert isinstance(stmt, Noop)
        return _dml(0)

    # -- reads ---------------------------------------------------------------------------
    def _select(self, stmt: Select, args: list[Any], schema: str, types: bool) -> dict[str, Any]:
        count = self._fast_count(stmt, schema)
        if count is not None:
            # count(*) without a filter: answered from the refreshed count, which also
            # covers rows recorded in counting mode.
            cols, col_types, rows = [stmt.items[0].alias or "count(*)"], [10], [[count]]
        else:
            cols, col_types, rows = self._counted_select(stmt, args, schema)
        body: dict[str, Any] = {"cols": cols, "rows": rows, "rowcount": len(rows)}
        if types:
            body["col_types"] = col_types
        return body

    def _fast_count(self, stmt: Select, schema: str) -> int | None:
        only = stmt.items[0].expr if len(stmt.items) == 1 else None
        if stmt.table is None or stmt.where or not isinstance(only, Func):
            return None
        if only.name != "count" or (only.args and not isinstance(only.args[0], Star)):
            return None
        if system_relation(*self.catalog.qualify(stmt.table, schema), self.catalog, self.node):
            return None
        return self.catalog.get(stmt.table, schema).visible_count()

    def _counted_select(
        self, stmt: Select, args: list[Any], schema: str
    ) -> tuple[list[str], list[Any], list[list[Any]]]:
        """``run_select`` over the source; a filtered count(*) counts counted keys vectorised.

        For ``count(*) WHERE <integer-key comparisons>`` (no ORDER BY / LIMIT) over a table
        with counted rows, the stored rows go through ``run_select`` and the counted keys
        through ``query.count_keys``: the same answer as building a sparse row per counted key
        and testing it, without the million-row loop.
        """
        only = stmt.items[0].expr if len(stmt.items) == 1 else None
        table = self._user_table(stmt, schema)
        pos = table.counted_pk if table is not None else None
        counted = table.visible_counted_keys() if table is not None and pos is not None else None
        if (
            counted
            and stmt.where
            and not stmt.order_by
            and stmt.limit is None
            and isinstance(only, Func)
            and only.name == "count"
            and (not only.args or isinstance(only.args[0], Star))
        ):
            assert table is not None and pos is not None
            rel, fqn = self._source(stmt, args, schema, counted=False)
            cols, col_types, rows = run_select(stmt, rel, args, fqn)
            extra = count_keys(stmt.where, table_relation(table, []), args, counted, pos)
            if extra is not None:
                return cols, col_types, [[rows[0][0] + extra]]
        rel, fqn = self._source(stmt, args, schema)
        return run_select(stmt, rel, args, fqn)

    def _user_table(self, stmt: Select, schema: str) -> Table | None:
        """The statement's table when it is a user table with counted rows, else None."""
        if stmt.table is None:
            return None
        qualified = self.catalog.qualify(stmt.table, schema)
        if system_relation(*qualified, self.catalog, self.node) is not None:
            return None
        table = self.catalog.get(stmt.table, schema)
        return table if table.counted_keys else None

    def _source(
        self, stmt: Select, args: list[Any], schema: str, *, counted: bool = True
    ) -> tuple[Relation, str]:
        if stmt.table is None:
            return Relation((), (), [[]]), ""
        qualified = self.catalog.qualify(stmt.table, schema)
        fqn = ".".join(qualified)
        system = system_relation(*qualified, self.catalog, self.node)
        if system is not None:
            return system, fqn
        table = self.catalog.get(stmt.table, schema)
        keys = matching_keys(table, stmt.where, args)
        rows = [row for row in map(table.get, keys) if row is not None]
        if counted and table.counted_keys:
            test = predicate(stmt.where, table_relation(table, []), args, fqn)
            rows.extend(row for row in table.counted_rows() if test(row))
        return table_relation(table, rows), fqn

    # -- writes --------------------------------------------------------------------------
    def _insert(
        self, stmt: Insert, args: list[Any], schema: str, count_only: bool
    ) -> dict[str, Any]:
        table = self.catalog.get(stmt.table, schema)
        if count_only:
            table.count_rows(len(stmt.rows), _pk_values(table, stmt, [args]))
            self.counters.rows_written += len(stmt.rows)
            return _dml(len(stmt.rows))
        plan = InsertPlan.build(table, stmt)
        count, error = plan.apply(plan.analyse(args), args)
        self.counters.rows_written += count
        if error is not None and len(stmt.rows) == 1:
            raise protocol.CrateError(_status_for(error[0]), error[0], error[1])
        return _dml(count)

    def _bulk(
        self,
        stmt: Statement,
        bulk_args: list[Any],
        schema: str,
        count_only: bool,
        item_fault: Callable[[], bool] | None,
    ) -> dict[str, Any]:
        if not isinstance(stmt, WRITES):
            raise protocol.parse_error(
                "Bulk operations are only supported for INSERT, UPDATE and DELETE"
            )
        self.counters.bulk_items += len(bulk_args)
        if not bulk_args:
            return {"cols": [], "results": []}
        width = stmt.param_count
        for item in bulk_args:
            if type(item) is not list or len(item) < width:
                raise protocol.parse_error(
                    f"Every bulk_args item needs {width} parameter values, got {item!r}"
                )
        table = self.catalog.get(stmt.table, schema)
        if count_only and isinstance(stmt, Insert) and item_fault is None:
            rows = len(bulk_args) * len(stmt.rows)
            table.count_rows(rows, _pk_values(table, stmt, bulk_args))
            self.counters.rows_written += rows
            per_item = {"rowcount": len(stmt.rows)}
            return {"cols": [], "results": [per_item] * len(bulk_args)}
        apply, shard_of = self._item_runner(stmt, table, bulk_args, count_only)
        results: list[dict[str, Any]] = []
        budget: Tally[int] = Tally()
        first_error: ItemError | None = None
        for index, item in enumerate(bulk_args):
            if item_fault is not None and item_fault():
                self.counters.faults["item_fail"] += 1
                fault = protocol.shard_unavailable_item(shard_of(index))["error"]
                transient = (fault["code"], fault["message"])
                first_error = first_error or transient
                results.append(self._failed(transient, shard_of(index), budget))
                continue
            count, error = apply(index, item)
            self.counters.rows_written += count
            if error is None:
                results.append(protocol.OK_ITEM if count == 1 else {"rowcount": count})
            else:
                first_error = first_error or error
                results.append(self._failed(error, shard_of(index), budget))
        if first_error is not None and len(results) == 1 and self.version < (5, 10, 11):
            code, message = first_error
            raise protocol.CrateError(_status_for(code), code, message)
        return {"cols": [], "results": results}

    @staticmethod
    def _item_runner(
        stmt: Statement, table: Table, bulk_args: list[Any], count_only: bool
    ) -> tuple[ItemRunner, Callable[[int], int]]:
        """Analyse every item (phase 1); return the apply step (phase 2) and item -> shard."""
        by_index: Callable[[int], int] = lambda index: index % table.shards  # noqa: E731
        if isinstance(stmt, Insert):
            if count_only:
                width = len(stmt.rows)

                def count(index: int, args: list[Any]) -> tuple[int, ItemError | None]:
                    table.count_rows(width, _pk_values(table, stmt, [args]))
                    return width, None

                return count, by_index
            plan = InsertPlan.build(table, stmt)
            analysed = [plan.analyse(args) for args in bulk_args]

            def shard(index: int) -> int:
                if not table.pk or not analysed[index]:
                    return by_index(index)
                return table.shard_of(tuple([analysed[index][0][p] for p in table.pk]))

            return (lambda index, args: plan.apply(analysed[index], args)), shard
        if isinstance(stmt, Update):
            update = UpdatePlan.build(table, stmt)
            for args in bulk_args:
                update.analyse(args)
            return (lambda index, args: update.apply(args)), by_index
        assert isinstance(stmt, Delete)
        return (lambda index, args: (delete_rows(table, stmt.where, args), None)), by_index

    def _failed(self, error: ItemError, shard: int, budget: Tally[int]) -> dict[str, Any]:
        """A ``-2`` item: with its ``error`` for the first 10 per shard since 5.10.0."""
        if self.version < (5, 10, 0) or budget[shard] >= protocol.ERRORS_REPORTED_PER_SHARD:
            return protocol.FAILED_ITEM
        budget[shard] += 1
        return {"rowcount": -2, "error": {"code": error[0], "message": error[1]}}


def _pk_values(table: Table, stmt: Insert, items: list[list[Any]]) -> list[Any] | None:
    """The primary-key values of counted rows, when the key is one ``?`` per VALUES row."""
    pos = table.counted_pk
    if pos is None:
        return None
    name = table.columns[pos].name
    if name not in stmt.columns:
        return None
    params = []
    for row in stmt.rows:
        expr = row[stmt.columns.index(name)]
        if not isinstance(expr, Param):
            return None
        params.append(expr.index)
    return [item[i] for item in items for i in params]
