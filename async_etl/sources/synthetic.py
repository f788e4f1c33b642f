"""The synthetic source: seeded records of a schema, generated in id-range batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from async_etl.core.schema import Schema, default_schema, parse_schema
from async_etl.errors import ConfigError
from async_etl.typing import Encoding, IdRange, WorkUnit


def load_schema(path: str | Path) -> Schema:
    """Read a schema from a TOML file with a ``[columns]`` table (see the project README).

    Raises ``ConfigError`` (one line naming the file and the column) on any problem.
    """
    try:
        text = Path(path).read_bytes().decode()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read schema file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read schema file: not UTF-8 ({exc.reason})") from exc
    return parse_schema(text, str(path))


@dataclass(frozen=True, slots=True)
class Synthetic:
    """What to generate: a schema and a seed.  Same seed, same data, whichever worker runs it."""

    schema: Schema = field(default_factory=default_schema)
    seed: int = 42

    @classmethod
    def from_options(
        cls, *, schema_file: str | None = None, payload_bytes: int = 0, seed: int = 42
    ) -> Synthetic:
        """Build from CLI-style options; raises ``ConfigError`` for a bad schema file."""
        schema = load_schema(schema_file) if schema_file else default_schema(payload_bytes)
        return cls(schema=schema, seed=seed)

    def unit(self, ids: IdRange, encoding: Encoding, batch_size: int = 0) -> WorkUnit:
        """The picklable unit of work that generates ``ids`` in ``encoding``.

        With ``batch_size`` the unit yields consecutive batches of that many rows.
        """
        return WorkUnit(
            seed=self.seed, ids=ids, schema=self.schema, encoding=encoding, batch_size=batch_size
        )
