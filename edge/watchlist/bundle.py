"""Watchlist bundle: the value types the device verifies into (the builder is ``edge.authority.build``).

Header (signed JSON, small): ids, version, validity, issuer, target, model,
threshold, caps, counts and, per target device, the data key sealed to that
device's X25519 key. Body: ``u32 length | entries JSON | secretbox(templates)``.
Templates are float32 little-endian, L2-normalised, of the model's embedding size, in entry order,
encrypted once with a random XSalsa20-Poly1305 key (libsodium secretbox); the
key is wrapped for each device with a libsodium sealed box. The signature
covers the ciphertext, so the device verifies before it decrypts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import numpy.typing as npt

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
class EntryMetadata:
    """What the authority states of one watchlisted subject: all of an entry but its templates."""

    subject_ref: str
    category: str
    authority_ref: str
    offence_code: str | None
    image_source: str
    image_date: date
    added_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Entry(EntryMetadata):
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
