"""A small signing world for the watchlist tests: keys, trust root, devices, bundles.

Everything here is real: real Ed25519 and X25519 keys, real signatures and
sealed boxes; only the templates are random unit vectors instead of faces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.public
import nacl.signing
import numpy as np

from edge.authority.build import EntrySpec, build_bundle, normalise, trust_document
from edge.watchlist.bundle import DeviceIdentity, ModelRef
from edge.watchlist.context import VerificationContext
from edge.watchlist.envelope import Envelope
from edge.watchlist.trust import TrustRoot, load_pinned

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
MODEL = ModelRef("dlib_resnet_v1", "ab" * 32, 128)
FLOOR = 0.90
FLEET = "boulevard"


def signing_key(seed: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(bytes([seed]) * 32)


def device_key(seed: int) -> nacl.public.PrivateKey:
    return nacl.public.PrivateKey(bytes([seed]) * 32)


def pub(key: nacl.signing.SigningKey) -> bytes:
    return bytes(key.verify_key)


def random_templates(rng: np.random.Generator, n: int,
                     dim: int = MODEL.dim) -> np.ndarray[Any, np.dtype[np.float32]]:
    return normalise(rng.standard_normal((n, dim)).astype(np.float32))


def entry(rng: np.random.Generator, i: int, *, n_templates: int = 2, **kw: Any) -> EntrySpec:
    base: dict[str, Any] = dict(
        subject_ref=f"subj-{i:05d}",
        category="wanted",
        authority_ref=f"warrant/2026/{i}",
        image_source="custody photo",
        image_date=date(2026, 1, 2),
        added_at=T0 - timedelta(days=10),
        expires_at=T0 + timedelta(days=60),
        templates=random_templates(rng, n_templates),
    )
    base.update(kw)
    return EntrySpec(**base)


@dataclass
class World:
    root: nacl.signing.SigningKey = field(default_factory=lambda: signing_key(1))
    watch: nacl.signing.SigningKey = field(default_factory=lambda: signing_key(2))
    order: nacl.signing.SigningKey = field(default_factory=lambda: signing_key(3))
    device: DeviceIdentity = field(default_factory=lambda: DeviceIdentity("cam-north", FLEET))
    dkey: nacl.public.PrivateKey = field(default_factory=lambda: device_key(10))
    other_dkey: nacl.public.PrivateKey = field(default_factory=lambda: device_key(11))
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))

    def trust_envelope(self, watch_threshold: int = 1,
                       extra_watch: tuple[nacl.signing.SigningKey, ...] = ()) -> Envelope:
        keys = {"root": pub(self.root), "watch": pub(self.watch), "order": pub(self.order)}
        keys |= {f"watch{i}": pub(k) for i, k in enumerate(extra_watch)}
        watch_names = ["watch", *(f"watch{i}" for i in range(len(extra_watch)))]
        return trust_document(
            1, keys,
            {"trust": (["root"], 1), "watchlist": (watch_names, watch_threshold),
             "order": (["order"], 1)},
            T0,
        ).sign(self.root)

    def ctx(self, trust: TrustRoot | None = None, device: DeviceIdentity | None = None,
            model: ModelRef | None = None) -> VerificationContext:
        """This world's device as a verification context (a fresh trust unless given)."""
        return VerificationContext(trust or self.trust(), device or self.device, model or MODEL,
                                   FLOOR, self.dkey)

    def trust(self, **kw: Any) -> TrustRoot:
        return load_pinned(self.trust_envelope(**kw).encode())

    def unsigned(self, version: int = 6, *, n: int = 3, issued_at: datetime | None = None,
                 entries: list[EntrySpec] | None = None, **kw: Any) -> Envelope:
        issued = issued_at or T0 + timedelta(hours=version)
        args: dict[str, Any] = dict(
            bundle_id=f"bundle-{version}",
            version=version,
            issued_at=issued,
            not_before=issued - timedelta(minutes=5),
            expires_at=issued + timedelta(days=30),
            issuer="Metropolitan Authority",
            fleet_id=FLEET,
            recipients={self.device.device_id: bytes(self.dkey.public_key)},
            model=MODEL,
            threshold=0.95,
            # Templates of the bundle's own embedding size (the device's model when one is given).
            entries=entries if entries is not None else [
                entry(self.rng, i, templates=random_templates(self.rng, 2, kw.get("model", MODEL).dim))
                for i in range(n)],
        )
        args.update(kw)
        return build_bundle(**args)

    def bundle(self, version: int = 6, **kw: Any) -> bytes:
        return self.unsigned(version, **kw).sign(self.watch).encode()

    def now(self, version: int = 6) -> datetime:
        return T0 + timedelta(hours=version, minutes=30)


def provision_documents(base: Path, device_id: str, camera_id: str, site: str, now: datetime,
                        device_public_key: bytes, models_dir: Path) -> float:
    """Write trust.json, order.json (valid now, 30 days) and bundle.bin for one device into
    ``base``, signed by a fresh ``World``'s authority for the real embedder; returns the
    bundle's threshold (0.95, or the model card's floor if higher)."""
    from edge.perception.manifest import load_manifest
    from edge.watchlist.model import embedder_floor, embedder_ref
    from edge.watchlist.order import DeploymentOrder

    world = World(device=DeviceIdentity(device_id, FLEET))
    (base / "trust.json").write_bytes(world.trust_envelope().encode())
    order = DeploymentOrder(
        order_id="order-1", issuer="Authority", issued_at=now - timedelta(days=1),
        fleet_id=FLEET, device_id=device_id, camera_ids=(camera_id,), site=site,
        purpose="test", valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=30),
        authorising_ref="auth/1", dpia_ref="dpia/1", equality_impact_ref="eq/1",
        rights_impact_ref="hr/1", public_notice_ref="notice/1")
    (base / "order.json").write_bytes(order.envelope().sign(world.order).encode())
    manifest = load_manifest(models_dir)
    threshold = round(max(0.95, embedder_floor(manifest)), 4)
    model = embedder_ref(manifest)
    entries = [entry(world.rng, i, templates=random_templates(world.rng, 2, model.dim)) for i in range(3)]
    bundle = world.unsigned(1, issued_at=now - timedelta(hours=1), model=model, entries=entries,
                            threshold=threshold, recipients={device_id: device_public_key})
    (base / "bundle.bin").write_bytes(bundle.sign(world.watch).encode())
    return threshold
