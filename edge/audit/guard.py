"""Refuse anything in an audit record that could be biometric data.

The audit log is meant to be handed to a regulator or a court, and it is kept
far longer than any evidence crop. A template or a face crop must therefore
never reach it, not even through a caller bug (``data={"why": embedding}``).
The typed helpers in records.py only take ids, hashes and counts; this guard is
the second line behind them and runs on every append, whatever the kind.

Refused (``AuditGuardError`` naming the path inside ``data``):
- any value that is not plain JSON (bytes, numpy arrays and scalars, objects);
- lists holding more than ``MAX_NUMBERS`` numbers in total (a vector);
- strings with a run of more than ``MAX_B64_RUN`` base64/hex characters (an
  encoded image or template), or with more than ``MAX_NUMBERS`` decimal numbers
  (a vector written out as text), or longer than ``MAX_STRING``;
- keys that name biometric payloads (``template``, ``embedding``, ``crop``, ...);
- a record whose canonical size exceeds ``MAX_RECORD_BYTES``.
"""

from __future__ import annotations

import re
from typing import Any, Final

from edge.errors import AuditGuardError

MAX_NUMBERS: Final = 16
MAX_B64_RUN: Final = 512
MAX_STRING: Final = 2048
MAX_DEPTH: Final = 6
MAX_RECORD_BYTES: Final = 16 * 1024
FORBIDDEN_KEYS: Final = frozenset(
    {
        "template",
        "templates",
        "embedding",
        "embeddings",
        "descriptor",
        "vector",
        "crop",
        "image",
        "jpeg",
        "png",
        "pixels",
        "face",
        "biometric",
    }
)
# Standard and URL-safe base64 alphabets (hex is a subset): a run this long is
# an encoded blob, never an id, a hash or a sentence.
_B64_RUN = re.compile(rf"[A-Za-z0-9+/=_-]{{{MAX_B64_RUN + 1},}}")
_DECIMAL = re.compile(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?")


def check_data(data: object) -> None:
    """Raise :class:`AuditGuardError` if ``data`` could carry biometric bytes."""
    if not isinstance(data, dict):
        raise AuditGuardError(f"record data must be an object, not {type(data).__name__}", "data")
    _check(data, "data", 0)


def _check(value: Any, path: str, depth: int) -> int:
    """Walk ``value``; return how many numbers it holds (for the vector rule)."""
    if depth > MAX_DEPTH:
        raise AuditGuardError(f"nested deeper than {MAX_DEPTH} levels", path)
    if value is None or isinstance(value, bool):
        return 0
    if type(value) in (int, float):  # exact types: numpy scalars subclass neither reliably
        return 1
    if isinstance(value, str):
        _check_string(value, path)
        return 0
    if isinstance(value, dict):
        numbers = 0
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditGuardError(f"object key {key!r} is not a string", path)
            if key.lower() in FORBIDDEN_KEYS:
                raise AuditGuardError(f"key '{key}' names biometric data", f"{path}.{key}")
            _check_string(key, f"{path}.{key}")
            numbers += _check(item, f"{path}.{key}", depth + 1)
        return numbers
    if isinstance(value, list | tuple):
        numbers = 0
        for i, item in enumerate(value):
            numbers += _check(item, f"{path}[{i}]", depth + 1)
        if numbers > MAX_NUMBERS:
            raise AuditGuardError(f"list holds {numbers} numbers (a vector or template?)", path)
        return numbers
    if isinstance(value, bytes | bytearray | memoryview):
        raise AuditGuardError(f"raw {type(value).__name__} ({len(value)} bytes)", path)
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if hasattr(value, "__array__") or hasattr(value, "dtype"):
        raise AuditGuardError(f"array-like value {kind}", path)
    raise AuditGuardError(f"value of type {kind} is not plain JSON", path)


def _check_string(s: str, path: str) -> None:
    if len(s) > MAX_STRING:
        raise AuditGuardError(f"string of {len(s)} characters (limit {MAX_STRING})", path)
    if _B64_RUN.search(s) is not None:
        raise AuditGuardError(f"string holds a run of more than {MAX_B64_RUN} base64 characters", path)
    if len(_DECIMAL.findall(s)) > MAX_NUMBERS:
        raise AuditGuardError(f"string holds more than {MAX_NUMBERS} decimal numbers (a vector?)", path)


def check_size(encoded: bytes) -> None:
    if len(encoded) > MAX_RECORD_BYTES:
        raise AuditGuardError(f"record of {len(encoded)} bytes (limit {MAX_RECORD_BYTES})", "data")
