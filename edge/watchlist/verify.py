"""The pure bundle verifier: bytes in, a ``VerifiedBundle`` or a typed refusal out.

Order matters: framing and size caps first (cheap, before reading), then the
payload type and signatures (nothing unsigned is interpreted), then the
header's claims against the device's state, clock, identity and model, then
the entries, and only then decryption. No I/O, no clock: ``now`` is passed in.
"""

from __future__ import annotations

import base64
import binascii
import struct
from datetime import datetime, timedelta
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.secret
import numpy as np

from edge.accountability.governance import check_threshold
from edge.errors import (
    CategoryError,
    ClockUntrustedError,
    DecryptError,
    EntryError,
    ExpiredError,
    MalformedError,
    NoTargetError,
    NotYetValidError,
    OversizeError,
    ReplayError,
    RollbackError,
    SignedDocumentError,
    WrongDeviceError,
    WrongFleetError,
    WrongModelError,
)
from edge.watchlist import canonical
from edge.watchlist.bundle import (
    CATEGORIES,
    DEFAULT_LIMITS,
    ENCRYPTION,
    MAX_TEMPLATE_DIM,
    TEMPLATE_DTYPE,
    BundleHeader,
    Caps,
    DeviceIdentity,
    Entry,
    Limits,
    ModelRef,
    StateRecord,
    VerifiedBundle,
)
from edge.watchlist.envelope import BUNDLE_TYPE, Envelope, decode, expect_type
from edge.watchlist.trust import TrustRoot

NORM_TOLERANCE = 1e-3
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_DEVICES = 1000


def parse_header(env: Envelope) -> BundleHeader:
    f = canonical.Fields(canonical.loads_object(env.header, "bundle header"), "bundle header")
    if f.text("template_dtype") != TEMPLATE_DTYPE:
        raise MalformedError(f"templates must be {TEMPLATE_DTYPE}")
    dim = f.integer("template_dim", lo=1, hi=MAX_TEMPLATE_DIM)
    if f.text("encryption") != ENCRYPTION:
        raise MalformedError(f"unsupported encryption {f.obj['encryption']!r}")
    model = f.sub("model")
    caps = f.sub("caps")
    sealed: dict[str, bytes] = {}
    for device, blob in f.sub("sealed_keys").obj.items():
        if not isinstance(blob, str) or len(blob) > 256:
            raise MalformedError(f"sealed key for {device!r} is not a short string")
        try:
            sealed[device] = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedError(f"sealed key for {device!r} is not base64") from exc
    header = BundleHeader(
        bundle_id=f.text("bundle_id", max_len=256),
        version=f.integer("version"),
        issued_at=f.time("issued_at"),
        not_before=f.time("not_before"),
        expires_at=f.time("expires_at"),
        issuer=f.text("issuer", max_len=256),
        fleet_id=f.text("fleet_id", max_len=256),
        device_ids=f.strings("device_ids", max_len=MAX_DEVICES),
        model=ModelRef(model.text("id", max_len=256), model.text("sha256", max_len=128), dim),
        threshold=f.number("threshold", lo=-1.0, hi=1.0),
        caps=Caps(
            caps.integer("max_entries", lo=0, hi=2**32),
            caps.integer("max_templates_per_entry", lo=1, hi=2**32),
            caps.integer("max_body_bytes", lo=0, hi=2**63),
        ),
        entry_count=f.integer("entry_count", hi=2**32),
        template_count=f.integer("template_count", hi=2**32),
        sealed_keys=sealed,
    )
    if not header.not_before < header.expires_at:
        raise MalformedError("bundle not_before must be earlier than expires_at")
    return header


def _check_state(h: BundleHeader, content: str, now: datetime, last: StateRecord | None) -> bool:
    """Rollback, replay and clock checks; returns whether the clock is trusted."""
    if last is None:
        return True
    same = h.version == last.version and content == last.content_sha256
    if now < last.issued_at:
        if same:
            return False  # keep running on what was accepted; refuse only new bundles
        raise ClockUntrustedError(
            f"clock reads {canonical.format_time(now)}, earlier than the last accepted "
            f"bundle's issue time {canonical.format_time(last.issued_at)}; fix time sync"
        )
    if h.version < last.version:
        raise RollbackError(f"bundle version {h.version} is lower than accepted {last.version}")
    if h.version == last.version and not same:
        raise ReplayError(
            f"bundle version {h.version} was already accepted with different content"
        )
    if h.version > last.version and h.issued_at < last.issued_at:
        raise RollbackError("bundle issued earlier than the last accepted one")
    return True


def _check_claims(
    h: BundleHeader,
    now: datetime,
    device: DeviceIdentity,
    expected_model: ModelRef,
    threshold_floor: float,
    clock_trusted: bool,
) -> None:
    if now >= h.expires_at:
        raise ExpiredError(f"bundle expired at {canonical.format_time(h.expires_at)}")
    if clock_trusted and now < h.not_before:
        raise NotYetValidError(f"bundle is valid from {canonical.format_time(h.not_before)}")
    if clock_trusted and h.issued_at > now + MAX_CLOCK_SKEW:
        # Accepting it would raise the clock floor into the future and lock out
        # every later bundle until the device clock caught up.
        raise NotYetValidError(
            f"bundle issued at {canonical.format_time(h.issued_at)}, after the device's "
            f"{canonical.format_time(now)}; check the signer's and the device's clocks"
        )
    if h.fleet_id != device.fleet_id:
        raise WrongFleetError(f"bundle is for fleet {h.fleet_id!r}, not {device.fleet_id!r}")
    if not h.device_ids:
        raise NoTargetError("bundle targets no device")
    if device.device_id not in h.device_ids:
        raise WrongDeviceError(f"bundle does not target device {device.device_id!r}")
    if h.model != expected_model:
        raise WrongModelError(
            f"bundle built for model {h.model.id} {h.model.sha256[:12]} ({h.model.dim}-D), device runs "
            f"{expected_model.id} {expected_model.sha256[:12]} ({expected_model.dim}-D)"
        )
    check_threshold(h.threshold, threshold_floor, f"bundle {h.bundle_id} v{h.version}")


def _entry(obj: Any, i: int, per_entry: int) -> Entry:
    f = canonical.Fields(obj, f"entry {i}", EntryError)
    category = f.text("category", max_len=64)
    if category not in CATEGORIES:
        raise CategoryError(f"entry {i}: unknown category {category!r}")
    offence = f.opt_text("offence_code", max_len=128)
    if category == "suspect" and offence is None:
        raise EntryError(f"entry {i}: category 'suspect' requires an offence_code")
    return Entry(
        subject_ref=f.text("subject_ref", max_len=256),
        category=category,
        authority_ref=f.text("authority_ref", max_len=512),
        offence_code=offence,
        image_source=f.text("image_source", max_len=512),
        image_date=f.day("image_date"),
        added_at=f.time("added_at"),
        expires_at=f.time("expires_at"),
        template_count=f.integer("templates", lo=1, hi=per_entry),
    )


def _split_body(env: Envelope) -> tuple[bytes, bytes]:
    if len(env.body) < 4:
        raise MalformedError("bundle body truncated")
    (n,) = struct.unpack(">I", env.body[:4])
    if n > len(env.body) - 4:
        raise MalformedError("bundle entries section truncated")
    return env.body[4 : 4 + n], env.body[4 + n :]


def parse_entries(env: Envelope, h: BundleHeader, limits: Limits = DEFAULT_LIMITS) -> tuple[
    tuple[Entry, ...], bytes
]:
    blob, ciphertext = _split_body(env)
    max_entries = min(h.caps.max_entries, limits.max_entries)
    per_entry = min(h.caps.max_templates_per_entry, limits.max_templates_per_entry)
    if len(env.body) > h.caps.max_body_bytes:
        raise OversizeError(f"payload of {len(env.body)} bytes exceeds its cap")
    if h.entry_count > max_entries:
        raise OversizeError(f"{h.entry_count} entries exceed the cap of {max_entries}")
    try:
        raw = canonical.json_list(blob, "bundle entries")
    except MalformedError as exc:
        raise EntryError(str(exc)) from exc
    if len(raw) != h.entry_count:
        raise EntryError(f"header says {h.entry_count} entries, body holds {len(raw)}")
    entries = tuple(_entry(obj, i, per_entry) for i, obj in enumerate(raw))
    refs = {e.subject_ref for e in entries}
    if len(refs) != len(entries):
        raise EntryError("a subject_ref appears in more than one entry")
    if sum(e.template_count for e in entries) != h.template_count:
        raise EntryError("entries' template counts do not add up to template_count")
    return entries, ciphertext


def decrypt_templates(
    h: BundleHeader, ciphertext: bytes, device: DeviceIdentity, device_key: nacl.public.PrivateKey
) -> np.ndarray[Any, np.dtype[np.float32]]:
    sealed = h.sealed_keys.get(device.device_id)
    if sealed is None:
        raise DecryptError(f"bundle carries no key for device {device.device_id!r}")
    try:
        data_key = nacl.public.SealedBox(device_key).decrypt(sealed)
        plain = nacl.secret.SecretBox(data_key).decrypt(ciphertext)
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, TypeError) as exc:
        raise DecryptError(
            "templates cannot be decrypted with this device's key (encrypted for another device?)"
        ) from exc
    expected = h.template_count * h.model.dim * 4
    if len(plain) != expected:
        raise MalformedError(f"decrypted templates are {len(plain)} bytes, expected {expected}")
    t = np.frombuffer(plain, dtype="<f4").reshape(h.template_count, h.model.dim)
    norms = np.einsum("ij,ij->i", t, t, dtype=np.float64) if len(t) else np.zeros(0)
    if not np.all(np.isfinite(norms)) or np.any(np.abs(norms - 1.0) > 2 * NORM_TOLERANCE):
        raise EntryError("a template is not a finite L2-normalised vector")
    return t.astype(np.float32, copy=False)


def verify_bundle(
    data: bytes,
    trust: TrustRoot,
    device: DeviceIdentity,
    now: datetime,
    *,
    expected_model: ModelRef,
    threshold_floor: float,
    last: StateRecord | None,
    device_key: nacl.public.PrivateKey,
    limits: Limits = DEFAULT_LIMITS,
) -> VerifiedBundle:
    """Verify, then decrypt. Raises only ``SignedDocumentError`` subclasses, whatever the bytes."""
    try:
        env = decode(data, max_header=limits.max_header_bytes, max_body=limits.max_body_bytes,
                     expect=BUNDLE_TYPE)
        signers = trust.verify(env, "watchlist")
        header = parse_header(env)
        content = env.content_sha256()
        clock_trusted = _check_state(header, content, now, last)
        _check_claims(header, now, device, expected_model, threshold_floor, clock_trusted)
        entries, ciphertext = parse_entries(env, header, limits)
        templates = decrypt_templates(header, ciphertext, device, device_key)
        offsets = np.zeros(len(entries) + 1, dtype=np.int64)
        np.cumsum([e.template_count for e in entries], out=offsets[1:])
        return VerifiedBundle(header, entries, templates, offsets, content, signers, clock_trusted)
    except SignedDocumentError:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError, RecursionError) as exc:
        # A guard, not the error model: any parser gap still surfaces typed.
        raise MalformedError(f"bundle could not be parsed: {exc}") from exc


def inspect(data: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, object]:
    """A printable summary without verifying anything and without any template bytes."""
    env = decode(data, max_header=limits.max_header_bytes, max_body=limits.max_body_bytes)
    expect_type(env, BUNDLE_TYPE)
    header = canonical.loads_object(env.header, "bundle header")
    header.pop("sealed_keys", None)
    blob, ciphertext = _split_body(env)
    entries = canonical.json_list(blob, "bundle entries")
    by_category: dict[str, int] = {}
    for e in entries:
        c = str(e.get("category")) if isinstance(e, dict) else "?"
        by_category[c] = by_category.get(c, 0) + 1
    return {
        "payload_type": env.payload_type,
        "content_sha256": env.content_sha256(),
        "signatures": [s.keyid.hex() for s in env.signatures],
        "header": header,
        "entries_by_category": by_category,
        "entries": [
            {k: v for k, v in e.items() if k != "templates"} | {"templates": e.get("templates")}
            for e in entries
            if isinstance(e, dict)
        ],
        "ciphertext_bytes": len(ciphertext),
    }
