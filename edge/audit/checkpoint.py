"""Signed checkpoints: the device's Ed25519 statement "my audit log's record
``seq`` has hash ``head``", published on ``<prefix>/audit/checkpoint`` so the centre
can keep it. Once a checkpoint is held elsewhere, the device can no longer rewrite
or cut its log before that point without the verifier noticing.

The signature covers the canonical encoding of the statement without
``signature``; ``key_id`` is the SHA-256 of the raw 32-byte public key (hex).
Pure: signing and verifying need no I/O and no clock (``ts`` is passed in).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from edge.audit.chain import canonical, is_hex64, is_ts
from edge.errors import MalformedError, SignatureError, UnknownKeyError

if TYPE_CHECKING:
    from nacl.signing import SigningKey, VerifyKey

CHECKPOINT_SCHEMA: Final = "edge.audit.checkpoint/1"
STATEMENT_KEYS: Final = frozenset({"schema", "device_id", "seq", "head", "ts", "key_id", "signature"})


def key_id_hex(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()


def sign_checkpoint(signing_key: SigningKey, device_id: str, seq: int, head: str, ts: str) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "schema": CHECKPOINT_SCHEMA,
        "device_id": device_id,
        "seq": seq,
        "head": head,
        "ts": ts,
        "key_id": key_id_hex(bytes(signing_key.verify_key)),
    }
    statement["signature"] = signing_key.sign(canonical(statement)).signature.hex()
    return statement


def verify_checkpoint(statement: Mapping[str, Any], public_key: bytes | VerifyKey) -> None:
    """Raise unless ``statement`` is a well-formed checkpoint signed by ``public_key``."""
    from nacl.exceptions import BadSignatureError, CryptoError
    from nacl.signing import VerifyKey

    if set(statement) != STATEMENT_KEYS or statement.get("schema") != CHECKPOINT_SCHEMA:
        raise MalformedError(f"not an audit checkpoint (keys {sorted(statement)})")
    seq, sig = statement["seq"], statement["signature"]
    if type(seq) is not int or seq < 0 or not is_hex64(statement["head"]) or not is_ts(statement["ts"]):
        raise MalformedError("audit checkpoint has a malformed seq, head or ts")
    if not isinstance(statement["device_id"], str) or not isinstance(sig, str) or len(sig) != 128:
        raise MalformedError("audit checkpoint has a malformed device_id or signature")
    try:
        vk = public_key if isinstance(public_key, VerifyKey) else VerifyKey(bytes(public_key))
        signature = bytes.fromhex(sig)
    except (ValueError, TypeError, CryptoError) as e:
        raise MalformedError(f"audit checkpoint key or signature cannot be decoded: {e}") from e
    if statement["key_id"] != key_id_hex(bytes(vk)):
        raise UnknownKeyError(f"checkpoint names key {statement['key_id'][:16]}..., not the given public key")
    body = {k: v for k, v in statement.items() if k != "signature"}
    try:
        vk.verify(canonical(body), signature)
    except BadSignatureError as e:
        raise SignatureError("audit checkpoint signature does not verify") from e
