"""The signed envelope: exact bytes, a fixed payload type, Ed25519 k-of-n.

Layout (all integers big-endian)::

    b"EDGEENV1"
    u16 type length   | payload type (ASCII)
    u32 header length | header (canonical JSON)
    u64 body length   | body (opaque bytes: for bundles, entries + ciphertext)
    u8  signature count, then per signature: 32-byte key id | 64-byte Ed25519 signature

Signatures cover a DSSE-style pre-authentication encoding (PAE) of type,
header and body, so no field can be moved or re-typed without breaking them.
Header and body are separate so the device can refuse oversized input before
it reads it and so the header stays small while the body holds the templates.
A key id is the sha256 of the raw 32-byte Ed25519 public key.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace

import nacl.exceptions
import nacl.signing

from edge.errors import (
    DuplicateSignatureError,
    MalformedError,
    OversizeError,
    PayloadTypeError,
    SignatureError,
    ThresholdError,
    UnknownKeyError,
    UntrustedKeyError,
)

MAGIC = b"EDGEENV1"
BUNDLE_TYPE = "application/vnd.edge.watchlist-bundle.v1"
ORDER_TYPE = "application/vnd.edge.deployment-order.v1"
TRUST_TYPE = "application/vnd.edge.trust-root.v1"
REVOCATION_TYPE = "application/vnd.edge.order-revocations.v1"
RESUME_TYPE = "application/vnd.edge.resume-matching.v1"
REVIEW_TYPE = "application/vnd.edge.review.v1"
PAYLOAD_TYPES = (BUNDLE_TYPE, ORDER_TYPE, TRUST_TYPE, REVOCATION_TYPE, RESUME_TYPE, REVIEW_TYPE)

KEYID_LEN = 32
SIG_LEN = 64
MAX_TYPE_LEN = 128
MAX_SIGNATURES = 32


def key_id_bytes(public_key: bytes) -> bytes:
    """The key id of a raw Ed25519 public key: its sha256."""
    return hashlib.sha256(public_key).digest()


def pae(payload_type: str, header: bytes, body: bytes) -> bytes:
    """DSSE-style pre-authentication encoding over the three signed fields."""
    t = payload_type.encode("ascii")
    return b"".join(
        (
            b"EDGESIGv1 ",
            b"%d " % len(t), t,
            b" %d " % len(header), header,
            b" %d " % len(body), body,
        )
    )


@dataclass(frozen=True)
class Signature:
    keyid: bytes
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    header: bytes
    body: bytes
    signatures: tuple[Signature, ...] = ()

    def signed_bytes(self) -> bytes:
        return pae(self.payload_type, self.header, self.body)

    def content_sha256(self) -> str:
        """Identity of the signed content, independent of who signed it."""
        return hashlib.sha256(self.signed_bytes()).hexdigest()

    def encode(self) -> bytes:
        t = self.payload_type.encode("ascii")
        parts = [
            MAGIC,
            struct.pack(">H", len(t)), t,
            struct.pack(">I", len(self.header)), self.header,
            struct.pack(">Q", len(self.body)), self.body,
            struct.pack(">B", len(self.signatures)),
        ]
        for s in self.signatures:
            parts += [s.keyid, s.sig]
        return b"".join(parts)

    def sign(self, key: nacl.signing.SigningKey) -> Envelope:
        """A copy with one more signature by ``key`` (signing twice is the caller's mistake)."""
        kid = key_id_bytes(bytes(key.verify_key))
        sig = key.sign(self.signed_bytes()).signature
        return replace(self, signatures=(*self.signatures, Signature(kid, sig)))


def decode(
    data: bytes, *, max_header: int, max_body: int, expect: str | None = None
) -> Envelope:
    """Parse the framing only; the type and sizes are checked before the parts are read."""
    view = memoryview(data)
    pos = 0

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if n > len(view) - pos:
            raise MalformedError(f"envelope truncated in {what}")
        chunk = bytes(view[pos : pos + n])
        pos += n
        return chunk

    def number(fmt: str, what: str) -> int:
        value: int = struct.unpack(fmt, take(struct.calcsize(fmt), what))[0]
        return value

    if take(len(MAGIC), "magic") != MAGIC:
        raise MalformedError("not an edge signed envelope (bad magic)")
    tlen = number(">H", "type length")
    if tlen > MAX_TYPE_LEN:
        raise MalformedError("payload type too long")
    try:
        payload_type = take(tlen, "payload type").decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedError("payload type is not ASCII") from exc
    if expect is not None and payload_type != expect:
        raise PayloadTypeError(f"payload type is {payload_type!r}, expected {expect!r}")
    hlen = number(">I", "header length")
    if hlen > max_header:
        raise OversizeError(f"header of {hlen} bytes exceeds the cap of {max_header}")
    header = take(hlen, "header")
    blen = number(">Q", "body length")
    if blen > max_body:
        raise OversizeError(f"payload of {blen} bytes exceeds the cap of {max_body}")
    body = take(blen, "body")
    nsig = number(">B", "signature count")
    if nsig > MAX_SIGNATURES:
        raise MalformedError(f"more than {MAX_SIGNATURES} signatures")
    sigs = tuple(
        Signature(take(KEYID_LEN, "key id"), take(SIG_LEN, "signature")) for _ in range(nsig)
    )
    if pos != len(view):
        raise MalformedError(f"{len(view) - pos} trailing bytes after the signatures")
    return Envelope(payload_type, header, body, sigs)


def expect_type(env: Envelope, payload_type: str) -> None:
    if env.payload_type != payload_type:
        raise PayloadTypeError(
            f"payload type is {env.payload_type!r}, expected {payload_type!r}"
        )


def verify_threshold(
    env: Envelope,
    *,
    keys: Mapping[bytes, bytes],
    allowed: frozenset[bytes],
    threshold: int,
    role: str,
) -> frozenset[bytes]:
    """Check that at least ``threshold`` distinct ``allowed`` keys signed ``env``.

    ``keys`` maps every key id the trust root knows to its public key. Any bad
    signature by an allowed key is a refusal even if the threshold is met
    otherwise: it means the bytes were altered. Signatures by unknown or
    not-allowed keys do not count; they are reported only when the threshold
    fails, so a rotation can carry signatures the verifier cannot judge.
    """
    seen: set[bytes] = set()
    for s in env.signatures:
        if s.keyid in seen:
            raise DuplicateSignatureError(
                f"key id {s.keyid.hex()[:16]}... signed more than once; each key counts once"
            )
        seen.add(s.keyid)
    message = env.signed_bytes()
    good: set[bytes] = set()
    unknown: list[bytes] = []
    untrusted: list[bytes] = []
    for s in env.signatures:
        if s.keyid not in keys:
            unknown.append(s.keyid)
            continue
        if s.keyid not in allowed:
            untrusted.append(s.keyid)
            continue
        try:
            nacl.signing.VerifyKey(keys[s.keyid]).verify(message, s.sig)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
            raise SignatureError(
                f"signature by key {s.keyid.hex()[:16]}... does not verify"
            ) from exc
        good.add(s.keyid)
    if len(good) >= threshold:
        return frozenset(good)
    if unknown:
        raise UnknownKeyError(
            f"signed by unknown key id {unknown[0].hex()[:16]}...; "
            f"the trust root does not hold it"
        )
    if untrusted:
        raise UntrustedKeyError(
            f"key id {untrusted[0].hex()[:16]}... is not trusted for role '{role}'"
        )
    raise ThresholdError(
        f"{len(good)} valid signature(s) for role '{role}', {threshold} required"
    )
