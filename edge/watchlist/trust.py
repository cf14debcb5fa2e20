"""The device's root of trust: which keys may sign what, and how many must.

A trust file is a signed envelope (payload type ``TRUST_TYPE``) whose header
lists public keys by key id and, per role, the allowed key ids and the
threshold. The first root is pinned at provisioning and must be signed by its
own ``trust`` role. Version N+1 replaces N only when it is signed by N's
``trust`` keys (the old authority consents) AND by its own ``trust`` keys at
its own threshold (the new keys prove possession), as TUF does for root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edge.errors import (
    MalformedError,
    RollbackError,
    SignedDocumentError,
    TrustError,
    UntrustedKeyError,
)
from edge.watchlist import canonical
from edge.watchlist.envelope import (
    TRUST_TYPE,
    Envelope,
    decode,
    key_id_bytes,
    verify_threshold,
)

ROLES = ("watchlist", "order", "trust")
# Roles a trust file may add: ``review`` lists the operators' keys whose signed
# reviews the device applies (see edge.accountability.signed_review).
OPTIONAL_ROLES = ("review",)
MAX_TRUST_HEADER = 64 * 1024
MAX_KEYS = 64


@dataclass(frozen=True)
class Role:
    keyids: frozenset[bytes]
    threshold: int


@dataclass(frozen=True)
class TrustRoot:
    version: int
    keys: Mapping[bytes, bytes]  # key id -> raw Ed25519 public key
    names: Mapping[bytes, str]
    roles: Mapping[str, Role]
    content_sha256: str
    envelope: Envelope

    def verify(self, env: Envelope, role: str) -> frozenset[bytes]:
        """Key ids that validly signed ``env`` for ``role``, or a typed refusal."""
        r = self.roles.get(role)
        if r is None:
            raise UntrustedKeyError(f"the trust root has no '{role}' role; no key may sign for it")
        return verify_threshold(
            env, keys=self.keys, allowed=r.keyids, threshold=r.threshold, role=role
        )


def _hex(text: str, n: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise TrustError(f"{what} is not hex") from exc
    if len(raw) != n:
        raise TrustError(f"{what} must be {n} bytes")
    return raw


def parse_structure(data: bytes) -> TrustRoot:
    """Structure only, NOT signatures: for tools; devices use ``load_pinned``/``rotate``."""
    env = decode(data, max_header=MAX_TRUST_HEADER, max_body=0, expect=TRUST_TYPE)
    try:
        f = canonical.Fields(canonical.loads_object(env.header, "trust root"), "trust root",
                             TrustError)
    except MalformedError as exc:
        raise TrustError(str(exc)) from exc
    version = f.integer("version", lo=1)
    f.time("issued_at")
    key_objs = f.sub("keys").obj
    if not key_objs or len(key_objs) > MAX_KEYS:
        raise TrustError(f"trust root must list 1..{MAX_KEYS} keys")
    keys: dict[bytes, bytes] = {}
    names: dict[bytes, str] = {}
    for kid_hex, entry in key_objs.items():
        kid = _hex(kid_hex, 32, "key id")
        kf = canonical.Fields(entry, f"key {kid_hex[:16]}", TrustError)
        pk = _hex(kf.text("public_key"), 32, "public key")
        if key_id_bytes(pk) != kid:
            raise TrustError(f"key id {kid_hex[:16]}... is not the sha256 of its public key")
        keys[kid] = pk
        names[kid] = kf.text("name", max_len=128)
    roles: dict[str, Role] = {}
    rf = f.sub("roles")
    if not set(ROLES) <= set(rf.obj) <= {*ROLES, *OPTIONAL_ROLES}:
        raise TrustError(f"trust root must define the roles {', '.join(ROLES)} "
                         f"and may add {', '.join(OPTIONAL_ROLES)}")
    for role in (*ROLES, *(r for r in OPTIONAL_ROLES if r in rf.obj)):
        r = rf.sub(role)
        ids = frozenset(_hex(h, 32, "role key id") for h in r.strings("keyids", max_len=MAX_KEYS))
        if not ids <= keys.keys():
            raise TrustError(f"role '{role}' names a key the trust root does not list")
        threshold = r.integer("threshold", lo=1, hi=max(1, len(ids)))
        if not ids:
            raise TrustError(f"role '{role}' has no keys")
        roles[role] = Role(ids, threshold)
    return TrustRoot(version, keys, names, roles, env.content_sha256(), env)


def load_pinned(data: bytes) -> TrustRoot:
    """The provisioned root: well formed and signed by its own ``trust`` role."""
    root = parse_structure(data)
    root.verify(root.envelope, "trust")
    return root


def parse_trust(data: bytes) -> TrustRoot:
    """The device's trust file, verified: the same as ``load_pinned``.

    A trust file read from disk is only as good as its signatures, so there is
    deliberately no unverified parse under this name.
    """
    return load_pinned(data)


def rotate(current: TrustRoot, data: bytes) -> TrustRoot:
    """Accept trust version N+1 only if signed as required by both N and N+1."""
    new = parse_structure(data)
    if new.version <= current.version:
        if new.version < current.version:
            raise RollbackError(f"trust version {new.version} is not above {current.version}")
        if new.content_sha256 != current.content_sha256:
            raise RollbackError(f"trust version {new.version} has different content from the accepted"
                                " root of that version: a foreign or altered root")
        return current
    if new.version != current.version + 1:
        raise TrustError(f"trust version {new.version} skips from {current.version}")
    try:
        current.verify(new.envelope, "trust")
    except SignedDocumentError as exc:
        raise TrustError(
            f"trust v{new.version} is not signed as the current root requires: {exc}"
        ) from exc
    try:
        new.verify(new.envelope, "trust")
    except SignedDocumentError as exc:
        raise TrustError(
            f"trust v{new.version} is not signed by its own keys as it requires: {exc}"
        ) from exc
    return new
