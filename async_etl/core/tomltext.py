"""TOML documents as editors save them: a leading byte-order mark is not an error.

Notepad and some other Windows editors start a UTF-8 file with U+FEFF; ``tomllib`` refuses it as
"Invalid statement (at line 1, column 1)", which names nothing a user can see.  Every job, plan
and schema document goes through ``loads`` here instead.
"""

from __future__ import annotations

import tomllib
from typing import Any

BOM = "\ufeff"
"""The byte-order mark as decoded text (UTF-8 bytes EF BB BF)."""


def loads(text: str) -> dict[str, Any]:
    """``tomllib.loads`` of ``text`` without one leading byte-order mark.

    Raises ``tomllib.TOMLDecodeError`` as ``tomllib`` does for anything else.
    """
    return tomllib.loads(text.removeprefix(BOM))


__all__ = ["BOM", "loads"]
