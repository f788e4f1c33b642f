"""The parts of a mapper job that the pure core needs: SCD and parallelism settings.

They live here (not in ``async_etl.jobs.spec``, which re-exports them) so that the core imports
nothing above it.  Values are validated by the job loader; ``ScdSpec.resolve`` does the checks
that need the source's column list, which only the driver learns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypeAlias

from async_etl.errors import ConfigError

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""What one part of a table name, or a column name, must look like."""

Deletes: TypeAlias = Literal["ignore", "expire", "delete"]


def is_identifier(name: str, *, dotted: bool = False) -> bool:
    """True when ``name`` is a plain identifier (or, with ``dotted``, dot-separated ones)."""
    parts = name.split(".") if dotted else [name]
    return all(IDENT.fullmatch(p) is not None for p in parts)


def is_table_name(name: str) -> bool:
    """True when ``name`` is a job's table name: ``name`` or ``schema.name``, no more parts."""
    return name.count(".") <= 1 and is_identifier(name, dotted=True)


@dataclass(frozen=True, slots=True)
class ParallelSpec:
    """The ``[parallel]`` section: when and how wide to fan chunks out.

    ``chunk_size`` (rows per chunk) None means unset: the run picks it
    (``core.chunks.chunk_sizing``); a value is always honoured (a source query with a top-level
    LIMIT is one chunk whatever the size).
    """

    enabled: bool = True
    max_workers: int = 4
    chunk_size: int | None = None
    min_rows_for_parallel: int = 100_000
    adaptive: bool = False  # max_workers = "auto[:MIN-MAX]": adapted between the bounds
    min_workers: int = 1


@dataclass(frozen=True, slots=True)
class ScdColumns:
    """An ``ScdSpec`` resolved against the source's columns (all names in source order).

    ``data`` is every source column; ``compared`` is ``tracked + overwrite``; columns in
    ``data`` that are neither key nor compared are written on insert and never compared.
    ``types`` holds the PostgreSQL type name of each ``data`` column (empty: not known); the
    SQL generators pick each column's change comparison from it (``core.compare``).
    ``target_types`` holds an existing PostgreSQL target's type of each ``data`` column as its
    drift check read it (a domain as its base type; empty: no such target, or not known).
    """

    data: tuple[str, ...]
    business_key: tuple[str, ...]
    tracked: tuple[str, ...]
    overwrite: tuple[str, ...]
    valid_from: str
    valid_to: str
    is_current: str
    type: Literal[1, 2]
    deletes: Deletes
    types: tuple[str, ...] = ()
    target_types: tuple[str, ...] = ()

    def type_of(self, name: str) -> str:
        """The PostgreSQL type name of data column ``name`` ("" when not known)."""
        if len(self.types) != len(self.data) or name not in self.data:
            return ""
        return self.types[self.data.index(name)]

    def target_type_of(self, name: str) -> str:
        """The existing target's type name of data column ``name`` ("" when not known)."""
        if len(self.target_types) != len(self.data) or name not in self.data:
            return ""
        return self.target_types[self.data.index(name)]

    def with_target(self, existing: Sequence[tuple[str, str]] | None) -> ScdColumns:
        """These columns with ``target_types`` from an existing target's (name, type) listing."""
        found = dict(existing or ())
        if not found:
            return self
        return replace(self, target_types=tuple(found.get(c, "") for c in self.data))

    @property
    def compared(self) -> tuple[str, ...]:
        """Columns whose change makes the target change (tracked, then overwrite)."""
        return self.tracked + self.overwrite

    @property
    def scd(self) -> tuple[str, ...]:
        """The bookkeeping columns a type-2 target adds (none for type 1)."""
        if self.type == 1:
            return ()
        return (self.valid_from, self.valid_to, self.is_current)

    @property
    def target(self) -> tuple[str, ...]:
        """Every target column, in DDL order."""
        return self.data + self.scd

    @property
    def pk(self) -> tuple[str, ...]:
        """The deterministic primary key of a target row: business key (+ valid_from)."""
        return self.business_key + ((self.valid_from,) if self.type == 2 else ())


@dataclass(frozen=True, slots=True)
class ScdSpec:
    """The ``[scd]`` section.  ``tracked=None`` means every non-key, non-overwrite column."""

    type: Literal[1, 2] = 2
    business_key: tuple[str, ...] = ()
    tracked: tuple[str, ...] | None = None
    overwrite: tuple[str, ...] = ()
    deletes: Deletes = "ignore"
    valid_from: str = "valid_from"
    valid_to: str = "valid_to"
    is_current: str = "is_current"

    def resolve(
        self, source_columns: Sequence[str], types: Sequence[str] | None = None
    ) -> ScdColumns:
        """Resolve against the source's columns (and their PostgreSQL type names, if known).

        Raises ``ConfigError`` when a key, tracked or overwrite column is not a source column,
        or when the source already has a column named like an SCD bookkeeping column.
        """
        cols = tuple(source_columns)
        if len(set(cols)) != len(cols):
            raise ConfigError(f"source columns are not unique: {', '.join(cols)}")
        known = set(cols)
        for what, names in (
            ("business_key", self.business_key),
            ("tracked", self.tracked or ()),
            ("overwrite", self.overwrite),
        ):
            missing = [n for n in names if n not in known]
            if missing:
                raise ConfigError(
                    f"[scd] {what}: {', '.join(missing)} not among the source columns "
                    f"({', '.join(cols)})"
                )
        if not self.business_key:
            raise ConfigError("[scd] business_key: at least one column is required")
        if self.type == 2:
            clash = [c for c in (self.valid_from, self.valid_to, self.is_current) if c in known]
            if clash:
                raise ConfigError(
                    f"[scd] the source already has column(s) {', '.join(clash)}; "
                    "rename them or set valid_from / valid_to / is_current"
                )
        taken = set(self.business_key) | set(self.overwrite)
        if self.tracked is None:
            tracked = tuple(c for c in cols if c not in taken)
        else:
            tracked = tuple(c for c in cols if c in set(self.tracked))
        overwrite = tuple(c for c in cols if c in set(self.overwrite))
        return ScdColumns(
            data=cols,
            business_key=self.business_key,
            tracked=tracked,
            overwrite=overwrite,
            valid_from=self.valid_from,
            valid_to=self.valid_to,
            is_current=self.is_current,
            type=self.type,
            deletes=self.deletes,
            types=tuple(types) if types is not None else (),
        )
