"""Watchlist bundle: value types and the builder used centrally.

Header (signed JSON, small): ids, version, validity, issuer, target, model,
threshold, caps, counts and, per target device, the data key sealed to that
device's X25519 key. Body: ``u32 length | entries JSON | secretbox(templates)``.
Templates are float32 little-endian, L2-normalised, of the model's embedding size, in entry order,
encrypted once with a random XSalsa20-Poly1305 key (libsodium secretbox); the
key is wrapped for each device with a libsodium sealed box. The signature
covers the ciphertext, so the device verifies before it decrypts.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import nacl.public
import nacl.secret
import nacl.utils
import numpy as np
import numpy.typing as npt

from edge.watchlist import canonical
from edge.watchlist.envelope import BUNDLE_TYPE, Envelope

CATEGORIES = ("wanted", "suspect", "missing_or_vulnerable", "risk_of_harm")
MAX_TEMPLATE_DIM = 4096
TEMPLATE_DTYPE = "float32le"
ENCRYPTION = "x25519-sealedbox/xsalsa20poly1305"

Templates = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelRef:
    """The embedding space a bundle is for: family, sha256 of its float32 file, vector size."""

    id: str
    sha256: str
    dim: int


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    fleet_id: str


@dataclass(frozen=True)
class Caps:
    max_entries: int
    max_templates_per_entry: int
    max_body_bytes: int


@dataclass(frozen=True)
class Limits:
    """The device's own hard limits, applied before anything is parsed."""

    max_header_bytes: int = 256 * 1024
    max_body_bytes: int = 64 * 1024 * 1024
    max_entries: int = 100_000
    max_templates_per_entry: int = 16


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class BundleHeader:
    bundle_id: str
    version: int
    issued_at: datetime
    not_before: datetime
    expires_at: datetime
    issuer: str
    fleet_id: str
    device_ids: tuple[str, ...]
    model: ModelRef
    threshold: float
    caps: Caps
    entry_count: int
    template_count: int
    sealed_keys: Mapping[str, bytes] = field(repr=False)


@dataclass(frozen=True)
class StateRecord:
    """What the device remembers of the last accepted bundle."""

    version: int
    issued_at: datetime
    content_sha256: str
    bundle_id: str


@dataclass(frozen=True)
class Entry:
    subject_ref: str
    category: str
    authority_ref: str
    offence_code: str | None
    image_source: str
    image_date: date
    added_at: datetime
    expires_at: datetime
    template_count: int


@dataclass(frozen=True)
class VerifiedBundle:
    """What the verifier hands to the matcher; ``templates`` rows follow entry order."""

    header: BundleHeader
    entries: tuple[Entry, ...]
    templates: Templates = field(repr=False)
    offsets: npt.NDArray[np.int64] = field(repr=False)  # entry i owns rows offsets[i]:offsets[i+1]
    content_sha256: str
    signer_keyids: frozenset[bytes]
    clock_trusted: bool = True

    def expired_entries(self, now: datetime) -> int:
        return sum(1 for e in self.entries if e.expires_at <= now)


@dataclass(frozen=True)
class EntrySpec:
    """One entry as the builder receives it (metadata plus plaintext templates)."""

    subject_ref: str
    category: str
    authority_ref: str
    image_source: str
    image_date: date
    added_at: datetime
    expires_at: datetime
    templates: Templates
    offence_code: str | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "subject_ref": self.subject_ref,
            "category": self.category,
            "authority_ref": self.authority_ref,
            "image_source": self.image_source,
            "image_date": self.image_date.isoformat(),
            "added_at": canonical.format_time(self.added_at),
            "expires_at": canonical.format_time(self.expires_at),
            "templates": int(self.templates.shape[0]),
        }
        if self.offence_code is not None:
            out["offence_code"] = self.offence_code
        return out


def normalise(templates: npt.ArrayLike) -> Templates:
    """(N, D) float32 rows scaled to unit length."""
    t = np.atleast_2d(np.asarray(templates, dtype=np.float32))
    norms = np.linalg.norm(t, axis=1, keepdims=True)
    out: Templates = (t / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def build_bundle(
    *,
    bundle_id: str,
    version: int,
    issued_at: datetime,
    not_before: datetime,
    expires_at: datetime,
    issuer: str,
    fleet_id: str,
    recipients: Mapping[str, bytes],
    model: ModelRef,
    threshold: float,
    entries: Sequence[EntrySpec],
    caps: Caps | None = None,
    header_extra: Mapping[str, object] | None = None,
    entries_json: list[dict[str, object]] | None = None,
) -> Envelope:
    """An unsigned bundle envelope for the devices in ``recipients`` (id -> X25519 public key).

    ``header_extra`` and ``entries_json`` override what is written, so tests can
    build well-signed bundles that are wrong in exactly one way.
    """
    plain = b"".join(
        np.ascontiguousarray(e.templates, dtype="<f4").tobytes() for e in entries
    )
    data_key = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
    ciphertext = bytes(nacl.secret.SecretBox(data_key).encrypt(plain))
    entries_blob = canonical.dumps(
        entries_json if entries_json is not None else [e.to_json() for e in entries]
    )
    body = struct.pack(">I", len(entries_blob)) + entries_blob + ciphertext
    n_templates = sum(int(e.templates.shape[0]) for e in entries)
    caps = caps or Caps(
        max_entries=max(1, len(entries)),
        max_templates_per_entry=max([1, *(int(e.templates.shape[0]) for e in entries)]),
        max_body_bytes=len(body),
    )
    header: dict[str, object] = {
        "bundle_id": bundle_id,
        "version": version,
        "issued_at": canonical.format_time(issued_at),
        "not_before": canonical.format_time(not_before),
        "expires_at": canonical.format_time(expires_at),
        "issuer": issuer,
        "fleet_id": fleet_id,
        "device_ids": sorted(recipients),
        "model": {"id": model.id, "sha256": model.sha256},
        "threshold": threshold,
        "caps": {
            "max_entries": caps.max_entries,
            "max_templates_per_entry": caps.max_templates_per_entry,
            "max_body_bytes": caps.max_body_bytes,
        },
        "entry_count": len(entries),
        "template_count": n_templates,
        "template_dim": model.dim,
        "template_dtype": TEMPLATE_DTYPE,
        "encryption": ENCRYPTION,
        "sealed_keys": {
            device: base64.b64encode(
                bytes(nacl.public.SealedBox(nacl.public.PublicKey(pk)).encrypt(data_key))
            ).decode("ascii")
            for device, pk in recipients.items()
        },
    }
    if header_extra:
        header.update(header_extra)
    return Envelope(BUNDLE_TYPE, canonical.dumps(header), body)
