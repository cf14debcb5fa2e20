"""The authority's builders: watchlist bundles and trust documents, unsigned.

Signing is a separate step (``edge bundle sign``, ``edge trust sign``); the device
side verifies what these produce (``edge.watchlist.verify``, ``edge.watchlist.trust``).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import nacl.public
import nacl.secret
import nacl.utils
import numpy as np
import numpy.typing as npt

from edge.watchlist import canonical
from edge.watchlist.bundle import ENCRYPTION, TEMPLATE_DTYPE, Caps, ModelRef, Templates
from edge.watchlist.envelope import BUNDLE_TYPE, TRUST_TYPE, Envelope, key_id_bytes


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


def trust_document(
    version: int,
    keys: Mapping[str, bytes],
    roles: Mapping[str, tuple[list[str], int]],
    issued_at: datetime,
) -> Envelope:
    """An unsigned trust envelope. ``keys``: name -> public key; roles name keys by name."""
    ids = {name: key_id_bytes(pk) for name, pk in keys.items()}
    header = {
        "version": version,
        "issued_at": canonical.format_time(issued_at),
        "keys": {ids[n].hex(): {"name": n, "public_key": pk.hex()} for n, pk in keys.items()},
        "roles": {
            role: {"keyids": sorted(ids[n].hex() for n in names), "threshold": threshold}
            for role, (names, threshold) in roles.items()
        },
    }
    return Envelope(TRUST_TYPE, canonical.dumps(header), b"")
