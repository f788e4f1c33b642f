"""Load modes of a mapper job and the SQL that swaps a fully refreshed table in.

Theory of operation
-------------------
A job loads its target in one of four modes (the field's names):

* ``merge`` — SCD type 1: insert new keys, overwrite changed ones (``[scd] type = 1``);
* ``scd2`` — SCD type 2: keep history (``[scd] type = 2``, the default);
* ``append`` — insert every source row, never update or compare.  Exactly once across
  crashes because each chunk commits together with its checkpoint (one PostgreSQL
  transaction), so a re-run of an uncommitted chunk never finds its rows already there;
* ``full_refresh`` — build the target from scratch in a fresh table (``new_table``), chunk
  by chunk and resumable like any run, then swap it in at the very end (``swap_sql``).
  Readers see the old table until the swap commits and the new one after, never a mix;
  the old table is dropped only by the swap itself.  The fresh table takes the shape of
  ``[scd] type`` (type 1 unless the job file says otherwise; ``--full-refresh`` of a
  ``merge`` / ``scd2`` job keeps that job's type): type 2 starts every key with one current
  version from the run's as-of time.  A full refresh never destroys history silently
  (``refresh_problem``): it refuses to rebuild a type-2 table as type 1, and to rebuild a
  type-2 table that holds expired versions (a normal run keeps them; dropping the table
  first is the explicit way to start over from the source alone).  It compares nothing, so
  the ``[scd]`` keys that only say how a merge compares (``COMPARISON_KEYS``) are refused in a
  job whose own mode it is, and set aside for a ``--full-refresh`` run of a merge / scd2 job.

How each dialect swaps (``swap_sql``):

* PostgreSQL: one transaction — ``DROP TABLE`` the old table, ``ALTER TABLE new RENAME``,
  rename its indexes to the names the old one had.  DDL is transactional, a reader blocked on
  the old table's lock resolves the name again after the commit and reads the new table;
* CrateDB: ``ALTER CLUSTER SWAP TABLE new TO target WITH (drop_source = true)``, one atomic
  cluster-state change (the target is created empty first when it does not exist yet);
* Oracle: DDL commits on its own, so no transaction can hold two renames.  The documented
  approach: ``ALTER TABLE target RENAME TO old``, ``ALTER TABLE new RENAME TO target``,
  ``DROP TABLE old PURGE``.  Between the two renames (milliseconds) a reader gets ORA-00942
  (no such table) — never a half-loaded table; readers that must not see even that query
  through a synonym repointed with ``CREATE OR REPLACE SYNONYM`` (``synonym_swap_sql``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias

from async_etl.core.scd_sql_common import Sql, quote, short_name
from async_etl.core.specs import ScdColumns, ScdSpec

__all__ = [
    "COMPARISON_KEYS",
    "MODES",
    "Mode",
    "comparison_keys",
    "crate_swap_sql",
    "indexes_after_load",
    "indexes_during_load",
    "mode_of",
    "new_table",
    "oracle_swap_sql",
    "pg_swap_sql",
    "refresh_compares",
    "refresh_problem",
    "resume_problem",
    "synonym_swap_sql",
]

Mode: TypeAlias = Literal["merge", "scd2", "append", "full_refresh"]
MODES: tuple[Mode, ...] = ("merge", "scd2", "append", "full_refresh")
_ALIASES: dict[str, Mode] = {"replace": "full_refresh", "full-refresh": "full_refresh",
                             "scd1": "merge", "type1": "merge", "type2": "scd2"}  # fmt: skip

NEW_SUFFIX = "etl_new"
OLD_SUFFIX = "etl_old"


def mode_of(text: str) -> Mode:
    """The mode ``text`` names (``replace`` is ``full_refresh``); ``ValueError`` if none."""
    word = text.strip().lower()
    for mode in MODES:
        if word == mode:
            return mode
    if word in _ALIASES:
        return _ALIASES[word]
    raise ValueError(f"expected one of {', '.join(MODES)} (or replace), got {text!r}")


COMPARISON_KEYS = ("deletes", "tracked", "overwrite")
"""The ``[scd]`` keys that only say how a merge / scd2 run compares the source with the target
(which change makes a new version, what a missing key means)."""

REFRESH_COMPARES = (
    "not with mode full_refresh: a full refresh replaces the table with the source's rows, "
    "there is nothing to compare (no change or missing key to detect); remove it, or use "
    "mode merge / scd2"
)
"""Why a full refresh refuses a ``COMPARISON_KEYS`` key, after the key's name."""


def comparison_keys(scd: ScdSpec) -> tuple[str, ...]:
    """The ``COMPARISON_KEYS`` that ``scd`` sets away from their defaults, in that order."""
    unset = {"deletes": scd.deletes == "ignore", "tracked": scd.tracked is None,
             "overwrite": not scd.overwrite}  # fmt: skip
    return tuple(k for k in COMPARISON_KEYS if not unset[k])


def refresh_compares(mode: str, scd: ScdSpec) -> str | None:
    """``[scd] KEY: why`` when a ``mode`` full refresh carries a comparison key (None: fine).

    For a job built in code; the job file's loader says the same naming the file.
    """
    keys = comparison_keys(scd) if mode == "full_refresh" else ()
    return f"[scd] {keys[0]}: {REFRESH_COMPARES}" if keys else None


def new_table(table: str, suffix: str = NEW_SUFFIX) -> str:
    """The fresh table a full refresh of ``table`` loads into (same schema, own name)."""
    schema, _, _ = table.rpartition(".")
    name = short_name(table, suffix)
    return f"{schema}.{name}" if schema else name


def indexes_after_load(mode: str, on_bad_row: str, dialect: str) -> bool:
    """Whether the load goes into a new table whose unique indexes are built after it.

    A PostgreSQL full refresh (and the initial load built as one) with ``on_bad_row =
    "fail"``: every chunk is one COPY into the new table, nothing in it can refuse a row, and
    ``swap`` builds the indexes.  Rejecting rows needs the indexes during the load; CrateDB
    and Oracle keep theirs during it too.  ``dialect``: the target's.
    """
    return indexes_during_load(mode, on_bad_row, dialect) is None


_DIALECT_NAMES = {"cratedb": "a CrateDB", "oracle": "an Oracle"}


def indexes_during_load(mode: str, on_bad_row: str, dialect: str) -> str | None:
    """Why the load keeps the target's indexes during it (None: ``indexes_after_load``).

    The target's kind first, then the mode (a load into the existing table), then
    ``on_bad_row``.  Raises nothing.
    """
    if dialect != "postgresql":
        name = _DIALECT_NAMES.get(dialect, f"a {dialect}")
        return f"{name} target keeps its indexes during the load"
    if mode == "append":
        return "an append loads the target table itself"
    if mode != "full_refresh":
        return "a merge into the existing table"
    if on_bad_row != "fail":
        return 'on_bad_row = "reject" needs the indexes during the load'
    return None


def refresh_problem(
    table: str, cols: ScdColumns, existing: Sequence[str] | None, history: bool
) -> str | None:
    """Why a full refresh may not rebuild ``table`` (None: it may).

    ``existing``: the target's column names (None: no table yet); ``history``: whether it
    holds an expired version (``is_current`` false).  Names compare case-insensitively.
    """
    if existing is None:
        return None
    meta = (cols.valid_from, cols.valid_to, cols.is_current)
    have = {c.lower() for c in existing}
    if cols.type == 1 and all(c.lower() in have for c in meta):
        return (f"{table} is a type-2 table ({', '.join(meta)}); a type-1 full refresh would "
                "drop its history and those columns: set [scd] type = 2 (mode = \"scd2\"), or "
                "drop the table first to rebuild it as type 1")  # fmt: skip
    if cols.type == 2 and history:
        return (f"{table} holds expired versions ({cols.is_current} false) that a full "
                "refresh would lose: run without --full-refresh (a normal run keeps them), or "
                "drop the table first to rebuild it from the source alone")  # fmt: skip
    return None


def _described(mode: str, scd_type: int) -> str:
    return mode if mode != "full_refresh" else f"full_refresh of type {scd_type}"


def resume_problem(stored: object, mode: str, scd_type: int) -> str | None:
    """Why a run in ``mode`` / ``[scd] type`` may not resume a plan stored as ``stored``.

    None: it may.  ``stored`` is the plan's ``[mode, type]``; a plan stored before plans
    recorded their mode (anything else) resumes as before.  An unfinished full refresh of
    the same type resumes under its ``merge`` / ``scd2`` job: it is the initial load of such
    a job (``jobs.planning.builds_new_table``), or a ``--full-refresh`` left half done,
    which the run then finishes.  Any other change (``--full-refresh`` or ``--mode
    replace`` after a failed merge) would run the stored chunks of one mode as another: a
    full refresh into a new table that was never made.
    """
    if not (isinstance(stored, list) and len(stored) == 2):
        return None
    was, was_type = str(stored[0]), stored[1]
    if (was, was_type) == (mode, scd_type):
        return None
    if was == "full_refresh" and mode in ("merge", "scd2") and was_type == scd_type:
        return None
    return (
        f"is unfinished as a {_described(was, was_type)} load; this run is a "
        f"{_described(mode, scd_type)} load: resume it with the mode it had, or start "
        "over with --fresh"
    )


def _index_suffixes(cols: ScdColumns) -> tuple[str, ...]:
    """The suffixes of the unique indexes ``scd_sql_pg.target_ddl`` creates for ``cols``."""
    return ("version", "current") if cols.type == 2 else ("bk",)


def pg_swap_sql(table: str, cols: ScdColumns) -> list[Sql]:
    """PostgreSQL: the statements of ONE transaction that replace ``table`` by its new table.

    The indexes of the new table are renamed to the names the target's had, so that the
    next full refresh can create its new table's indexes again.
    """
    new = new_table(table)
    schema = table.rpartition(".")[0]
    name = table.rpartition(".")[2]
    out = [Sql(f"DROP TABLE IF EXISTS {quote(table)}"),
           Sql(f"ALTER TABLE {quote(new)} RENAME TO {quote(name)}")]  # fmt: skip
    for suffix in _index_suffixes(cols):
        old_name = short_name(new, suffix)
        index = f"{schema}.{old_name}" if schema else old_name
        out.append(
            Sql(
                f"ALTER INDEX IF EXISTS {quote(index)} RENAME TO {quote(short_name(table, suffix))}"
            )
        )
    return out


def crate_swap_sql(table: str) -> str:
    """CrateDB: the one statement that swaps the new table in and drops the old data."""
    return (
        f"ALTER CLUSTER SWAP TABLE {quote(new_table(table), 'crate')} "
        f"TO {quote(table, 'crate')} WITH (drop_source = true)"
    )


def oracle_swap_sql(table: str, *, exists: bool) -> list[Sql]:
    """Oracle: rename the old table away, the new one in, drop the old (each DDL commits).

    ``exists``: whether ``table`` exists now (a first full refresh only renames).
    """
    name = table.rpartition(".")[2]
    new, old = new_table(table), new_table(table, OLD_SUFFIX)
    out: list[Sql] = []
    if exists:
        out.append(Sql(f"ALTER TABLE {_ora(table)} RENAME TO {_ora(old.rpartition('.')[2])}"))
    out.append(Sql(f"ALTER TABLE {_ora(new)} RENAME TO {_ora(name)}"))
    if exists:
        out.append(Sql(f"DROP TABLE {_ora(old)} PURGE"))
    return out


def synonym_swap_sql(synonym: str, table: str) -> Sql:
    """Oracle: repoint the readers' ``synonym`` at ``table`` in one atomic statement."""
    return Sql(f"CREATE OR REPLACE SYNONYM {_ora(synonym)} FOR {_ora(table)}")


def _ora(name: str) -> str:
    return quote(name, "oracle")
