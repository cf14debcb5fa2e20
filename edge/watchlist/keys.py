"""Key files: Ed25519 signer keys and X25519 device keys.

A private key file is JSON, mode 0600, created exclusively (never overwrites);
its public half goes to ``<name>.pub`` (0644) for the trust root and for
bundle builders. Keys are hex so they survive copy and paste.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.public
import nacl.signing

from edge.errors import ConfigError
from edge.watchlist.envelope import key_id_bytes

SIGNER = "ed25519-signer"
DEVICE = "x25519-device"


@dataclass(frozen=True)
class PublicKeyFile:
    kind: str
    name: str
    public_key: bytes

    @property
    def key_id_hex(self) -> str:
        return key_id_bytes(self.public_key).hex()

    def to_json(self) -> dict[str, str]:
        out = {"kind": self.kind, "name": self.name, "public_key": self.public_key.hex()}
        if self.kind == SIGNER:
            out["key_id"] = self.key_id_hex
        return out


def _write_exclusive(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, mode)  # the umask may have narrowed or the FS widened it


def generate(kind: str, name: str, path: Path) -> PublicKeyFile:
    """Create ``path`` (0600) and ``path.pub`` (0644); refuse to overwrite either."""
    if kind == SIGNER:
        sk = nacl.signing.SigningKey.generate()
        secret, public = bytes(sk), bytes(sk.verify_key)
    elif kind == DEVICE:
        dk = nacl.public.PrivateKey.generate()
        secret, public = bytes(dk), bytes(dk.public_key)
    else:
        raise ValueError(f"unknown key kind {kind!r}")
    pub = PublicKeyFile(kind, name, public)
    pub_path = path.with_name(path.name + ".pub")
    for p in (path, pub_path):
        if p.exists():
            raise ConfigError("keys.out", f"{p} exists; refusing to overwrite a key")
    body = {**pub.to_json(), "private_key": secret.hex()}
    try:
        # A provisioning folder's keys/ may not exist yet; made private like the key.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_exclusive(path, json.dumps(body, indent=1).encode(), 0o600)
        _write_exclusive(pub_path, json.dumps(pub.to_json(), indent=1).encode(), 0o644)
    except OSError as e:
        raise ConfigError("keys.out", f"cannot write {path}: {e.strerror or e}") from e
    return pub


def _read(path: Path, kind: str) -> dict[str, str]:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), f"cannot read key file: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        raise ConfigError(str(path), f"not a {kind} key file")
    return obj


def _hex32(obj: dict[str, str], field: str, path: Path) -> bytes:
    try:
        raw = bytes.fromhex(obj[field])
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(str(path), f"field {field} missing or not hex") from exc
    if len(raw) != 32:
        raise ConfigError(str(path), f"field {field} must be 32 bytes")
    return raw


def load_signer(path: Path) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(_hex32(_read(path, SIGNER), "private_key", path))


def load_device_key(path: Path) -> nacl.public.PrivateKey:
    return nacl.public.PrivateKey(_hex32(_read(path, DEVICE), "private_key", path))


def load_public(path: Path, kind: str) -> PublicKeyFile:
    """A ``.pub`` file, or the public half of a private key file."""
    obj = _read(path, kind)
    return PublicKeyFile(kind, str(obj.get("name", path.stem)), _hex32(obj, "public_key", path))
