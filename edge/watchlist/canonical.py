"""Canonical JSON out, strict JSON in, and typed field access.

Signatures cover exact bytes, so canonical output is only for reproducible
builds; the strict reader is what matters on the device: duplicate keys, NaN,
Infinity, deep nesting or bad UTF-8 are refused with a typed error instead of
surfacing as ``ValueError``/``RecursionError``.
"""

from __future__ import annotations

import functools
import json
import math
from datetime import UTC, date, datetime
from typing import Any, NoReturn

from edge.errors import MalformedError, SignedDocumentError
from edge.formats import canonical_json, iso_utc

dumps = canonical_json  # the firmware's one canonical JSON writer, under its old name here


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedError(f"duplicate JSON key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> NoReturn:
    raise MalformedError(f"JSON constant {name} is not allowed")


def _loads(data: bytes, what: str) -> object:
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except MalformedError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedError(f"{what} is not valid JSON: {exc}") from exc


def loads_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse ``data`` as one JSON object or raise ``MalformedError`` naming ``what``."""
    obj = _loads(data, what)
    if not isinstance(obj, dict):
        raise MalformedError(f"{what} must be a JSON object")
    return obj


def json_list(data: bytes, what: str) -> list[Any]:
    """Parse ``data`` as one JSON array or raise ``MalformedError`` naming ``what``."""
    obj = _loads(data, what)
    if not isinstance(obj, list):
        raise MalformedError(f"{what} must be a JSON array")
    return obj


_MISSING = object()


@functools.lru_cache(maxsize=4096)
def _parse_time(text: str) -> datetime | None:
    """Aware UTC datetime or None; cached because a bundle repeats the same few times."""
    try:
        t = datetime.fromisoformat(text)
        if t.tzinfo is None:
            return None
        return t.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def format_time(t: datetime) -> str:
    """RFC 3339 UTC with a ``Z``, second precision."""
    return iso_utc(t, "seconds")


class Fields:
    """Typed, erroring access to a JSON object; ``error`` is the class raised on a bad field."""

    def __init__(
        self, obj: object, what: str, error: type[SignedDocumentError] = MalformedError
    ) -> None:
        if not isinstance(obj, dict):
            raise error(f"{what} must be a JSON object")
        self.obj: dict[str, Any] = obj
        self.what = what
        self.error = error

    def fail(self, key: str, message: str) -> NoReturn:
        raise self.error(f"{self.what}: field '{key}' {message}")

    def _get(self, key: str) -> object:
        if key not in self.obj:
            self.fail(key, "is missing")
        return self.obj[key]

    def has(self, key: str) -> bool:
        return key in self.obj and self.obj[key] is not None

    def text(self, key: str, *, max_len: int = 1024, allow_empty: bool = False) -> str:
        value = self.obj.get(key, _MISSING)
        if type(value) is not str:  # one type test on the hot path (10^5 calls per bundle)
            if value is _MISSING:
                self.fail(key, "is missing")
            if not isinstance(value, str):
                self.fail(key, "must be a string")
        if len(value) > max_len:
            self.fail(key, f"is longer than {max_len} characters")
        if not allow_empty and (not value or value.isspace()):
            self.fail(key, "must not be empty")
        return value

    def opt_text(self, key: str, *, max_len: int = 1024) -> str | None:
        return self.text(key, max_len=max_len) if self.has(key) else None

    def integer(self, key: str, *, lo: int = 0, hi: int = 2**64 - 1) -> int:
        value = self._get(key)
        # bool is an int subclass in Python; JSON true is not a number.
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, "must be an integer")
        if not lo <= value <= hi:
            self.fail(key, f"must be in [{lo}, {hi}]")
        return value

    def number(self, key: str, *, lo: float, hi: float) -> float:
        value = self._get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(key, "must be a number")
        number = float(value)
        if not math.isfinite(number) or not lo <= number <= hi:
            self.fail(key, f"must be in [{lo}, {hi}]")
        return number

    def flag(self, key: str, default: bool) -> bool:
        if not self.has(key):
            return default
        value = self.obj[key]
        if not isinstance(value, bool):
            self.fail(key, "must be true or false")
        return value

    def time(self, key: str) -> datetime:
        text = self.text(key, max_len=40)
        t = _parse_time(text)
        if t is None:
            self.fail(key, f"is not an RFC 3339 time with a UTC offset: {text!r}")
        return t

    def day(self, key: str) -> date:
        text = self.text(key, max_len=40)
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            self.fail(key, f"is not a date: {text!r}")

    def sub(self, key: str) -> Fields:
        return Fields(self._get(key), f"{self.what}.{key}", self.error)

    def items(self, key: str, *, max_len: int) -> list[Any]:
        value = self._get(key)
        if not isinstance(value, list):
            self.fail(key, "must be a list")
        if len(value) > max_len:
            self.fail(key, f"has more than {max_len} items")
        return value

    def strings(self, key: str, *, max_len: int) -> tuple[str, ...]:
        items = self.items(key, max_len=max_len)
        if not all(isinstance(i, str) and i for i in items):
            self.fail(key, "must hold non-empty strings")
        return tuple(items)
