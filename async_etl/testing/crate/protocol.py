"""Wire-level facts of CrateDB's HTTP ``/_sql`` endpoint: error codes, bodies and versions.

Pure: builds JSON-ready dicts and never touches a socket.  ``CrateError`` carries an HTTP
status, a CrateDB error code and the ``Exception[text]`` message; the server serialises it as
``{"error": {"message": ..., "code": ...}}``.
"""

from __future__ import annotations

from typing import Any

OK_ITEM = {"rowcount": 1}
NOOP_ITEM = {"rowcount": 0}
FAILED_ITEM = {"rowcount": -2}
DUPLICATE_KEY_MESSAGE = "DuplicateKeyException[A document with the same primary key exists already]"
ERRORS_REPORTED_PER_SHARD = 10
"""CrateDB >= 5.10.0 attaches an ``error`` object to the first 10 failed items per shard only."""


class CrateError(Exception):
    """Raised by the engine for a statement CrateDB would refuse; carries status and code."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self, trace: bool = False) -> dict[str, Any]:
        """The JSON error body (with ``error_trace`` when asked for)."""
        body: dict[str, Any] = {"error": {"message": self.message, "code": self.code}}
        if trace:
            body["error_trace"] = f"{self.message}\n\tat io.crate.standin (stand-in trace)"
        return body


def parse_error(text: str) -> CrateError:
    """400 / 4000 ``SQLParseException``: syntax, unsupported SQL, bad request body."""
    return CrateError(400, 4000, f"SQLParseException[{text}]")


def unsupported(text: str) -> CrateError:
    """400 / 4004 ``UnsupportedFeatureException``: valid CrateDB SQL the stand-in cannot run."""
    return CrateError(400, 4004, f"UnsupportedFeatureException[{text}]")


def analysis_error(text: str) -> CrateError:
    """400 / 4000 for an analysis failure such as a value that cannot be cast."""
    return parse_error(text)


def column_name_refused(name: str) -> CrateError | None:
    """400 / 4008 ``InvalidColumnNameException`` for a name CrateDB refuses as a column's.

    CrateDB's ``ColumnIdent.validateColumnName`` (docs, CREATE TABLE, Naming restrictions): a
    name with a dot, one in subscript form (``a['b']``), and one starting with ``_`` (the
    system columns' pattern).  None: the name is allowed.
    """
    if "." in name:
        why = "contains a dot"
    elif "[" in name and "]" in name:
        why = "conflicts with subscript pattern, square brackets are not allowed"
    elif name.startswith("_"):
        why = "conflicts with system column pattern"
    else:
        return None
    return CrateError(400, 4008, f'InvalidColumnNameException["{name}" {why}]')


def relation_unknown(fqn: str) -> CrateError:
    """404 / 4041 for a table that does not exist."""
    return CrateError(404, 4041, f"RelationUnknown[Relation '{fqn}' unknown]")


def schema_unknown(schema: str) -> CrateError:
    """404 / 4045 for a schema nobody created a table in."""
    return CrateError(404, 4045, f"SchemaUnknownException[Schema '{schema}' unknown]")


def column_unknown(name: str, fqn: str) -> CrateError:
    """404 / 4043 for a column the table does not have."""
    return CrateError(404, 4043, f"ColumnUnknownException[Column {name} unknown in {fqn}]")


def relation_exists(fqn: str) -> CrateError:
    """409 / 4093 for ``CREATE TABLE`` of an existing table."""
    return CrateError(409, 4093, f"RelationAlreadyExists[Relation '{fqn}' already exists.]")


def duplicate_key() -> CrateError:
    """409 / 4091 for a single-row insert that hits an existing primary key."""
    return CrateError(409, 4091, DUPLICATE_KEY_MESSAGE)


def validation_error(column: str, text: str) -> CrateError:
    """400 / 4003 for a column validation failure (updating a PK, NOT NULL violated)."""
    return CrateError(
        400, 4003, f"ColumnValidationException[Validation failed for {column}: {text}]"
    )


def unavailable(text: str = "stand-in: injected fault") -> CrateError:
    """503 / 5030: the node cannot serve the request right now (retryable)."""
    return CrateError(503, 5030, f"NodeNotConnectedException[{text}]")


def busy(text: str = "stand-in: too many requests") -> CrateError:
    """429 / 4290: the node rejected the request for load (retryable)."""
    return CrateError(429, 4290, f"EsRejectedExecutionException[{text}]")


def shard_unavailable_item(shard: int) -> dict[str, Any]:
    """A per-item transient failure: nothing was written for the item."""
    message = f"ShardUnavailableException[[doc][{shard}] shard is not available (stand-in)]"
    return {"rowcount": -2, "error": {"code": 5002, "message": message}}


def parse_version(text: str) -> tuple[int, int, int]:
    """``"5.10.11"`` -> ``(5, 10, 11)``; extra parts and suffixes are ignored."""
    parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in text.split(".")[:3]]
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def node_info(version: str, name: str, cluster_name: str) -> dict[str, Any]:
    """The ``GET /`` document."""
    return {
        "ok": True,
        "status": 200,
        "name": name,
        "cluster_name": cluster_name,
        "version": {
            "number": version,
            "build_hash": "0" * 40,
            "build_timestamp": "2025-01-01T00:00:00Z",
            "build_snapshot": False,
            "lucene_version": "9.12.0",
        },
    }


def every_item_failed(items: int, err: CrateError) -> dict[str, Any]:
    """A 200 bulk body with ``err`` on each of ``items`` items (CrateDB 5.10.9, crate#18067)."""
    item = {"rowcount": -2, "error": {"code": err.code, "message": err.message}}
    return {"cols": [], "results": [item] * items}
