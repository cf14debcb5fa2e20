"""Operators: argon2 password hashes, roles, login rate limits and each operator's review key.

Each operator has an Ed25519 signer key file (edge's key format) named after
the operator: its public half is what the authority lists under the device
trust root's ``review`` role, and the device records the key's name as the
verifier. Keys live in the station's state directory, readable by the station
only, and are used only for decisions the operator makes while logged in.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import argon2
import nacl.signing

from edge.accountability.adjudication import Review
from edge.accountability.signed_review import sign_review
from edge.watchlist import keys
from station.errors import StationError

ROLES: Final = ("operator", "supervisor")
NAME = re.compile(r"[a-z][a-z0-9._-]{1,63}")
MIN_PASSWORD: Final = 10

_hasher = argon2.PasswordHasher()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise StationError(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def check_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


# A hash to verify against when the user does not exist, so both paths take as long.
_DUMMY: Final = _hasher.hash("not-a-real-password-0")


def check_login(stored_hash: str | None, password: str) -> bool:
    if stored_hash is None:
        check_password(_DUMMY, password)
        return False
    return check_password(stored_hash, password)


def key_path(keys_dir: Path, username: str) -> Path:
    return keys_dir / f"{username}.ed25519"


def create_key(keys_dir: Path, username: str) -> Path:
    """The operator's new review key; its ``.pub`` goes to the authority for the trust root."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = key_path(keys_dir, username)
    keys.generate(keys.SIGNER, username, path)
    return path


class Signers:
    """Loads each operator's key once and signs that operator's reviews with it."""

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self._keys: dict[str, nacl.signing.SigningKey] = {}

    def signer_for(self, username: str) -> nacl.signing.SigningKey:
        if username not in self._keys:
            path = key_path(self.keys_dir, username)
            if not path.exists():
                raise StationError(f"operator {username} has no review key ({path}); "
                                   f"create one with `edge-station user add`")
            self._keys[username] = keys.load_signer(path)
        return self._keys[username]

    def sign(self, review: Review, device_id: str) -> bytes:
        return sign_review(review, device_id, self.signer_for(review.verifier_id))


@dataclass
class LoginLimiter:
    """At most ``max_failures`` failed logins per key (user name, client address) per window."""

    max_failures: int = 5
    window_s: float = 300.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def blocked(self, keys_: tuple[str, ...], now: float) -> bool:
        return any(len(self._recent(k, now)) >= self.max_failures for k in keys_)

    def failed(self, keys_: tuple[str, ...], now: float) -> None:
        for k in keys_:
            self._recent(k, now).append(now)

    def succeeded(self, keys_: tuple[str, ...]) -> None:
        for k in keys_:
            self._failures.pop(k, None)
