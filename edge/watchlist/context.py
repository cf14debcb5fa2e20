"""What a device verifies signed documents against, as one value.

The trust root, the device's identity and X25519 key, the embedding model and its
threshold floor, and the parser limits travel together: the device, ``edge selftest``,
the ``edge bundle verify|inspect`` commands and the bench all verify through a
:class:`VerificationContext`, and :func:`load_context` is the one place one is
assembled from files. Verification itself stays pure (``verify``, ``order``,
``trust``); this object only remembers the arguments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nacl.public

from edge.errors import StateError
from edge.perception.manifest import DEFAULT_EMBEDDER, Manifest
from edge.watchlist.bundle import (
    DEFAULT_LIMITS,
    DeviceIdentity,
    Limits,
    ModelRef,
    StateRecord,
    VerifiedBundle,
)
from edge.watchlist.keys import load_device_key
from edge.watchlist.model import embedder_floor, embedder_ref
from edge.watchlist.order import DeploymentOrder, verify_order
from edge.watchlist.trust import TrustRoot, load_pinned, rotate
from edge.watchlist.verify import verify_bundle


@dataclass(frozen=True)
class VerificationContext:
    trust: TrustRoot
    identity: DeviceIdentity
    model: ModelRef
    threshold_floor: float
    device_key: nacl.public.PrivateKey
    limits: Limits = DEFAULT_LIMITS

    def verify_bundle(self, data: bytes, now: datetime, last: StateRecord | None) -> VerifiedBundle:
        """Verify and decrypt a bundle for this device (``last``: the recorded state)."""
        return verify_bundle(data, self.trust, self.identity, now, expected_model=self.model,
                             threshold_floor=self.threshold_floor, last=last,
                             device_key=self.device_key, limits=self.limits)

    def verify_order(self, data: bytes) -> DeploymentOrder:
        """Verify a deployment order for this device's fleet (its window is checked by the caller)."""
        return verify_order(data, self.trust, self.identity.fleet_id)

    def rotate_trust(self, data: bytes) -> VerificationContext:
        """The same context under the next trust root (signed by the current one and itself)."""
        return dataclasses.replace(self, trust=rotate(self.trust, data))


def read_file(path: Path, what: str, fix: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise StateError(f"cannot read the {what} {path}: {e.strerror}; {fix}") from e


def load_context(*, trust_file: Path, device_key: Path, identity: DeviceIdentity,
                 manifest: Manifest, family: str = DEFAULT_EMBEDDER,
                 limits: Limits = DEFAULT_LIMITS, trust: TrustRoot | None = None) -> VerificationContext:
    """Read the pinned trust (unless the kept ``trust`` is given) and the device key; the
    model and floor come from the manifest."""
    if trust is None:
        trust = load_pinned(read_file(trust_file, "trust file", "provision it with `edge trust init`"))
    return VerificationContext(trust, identity, embedder_ref(manifest, family),
                               embedder_floor(manifest, family), load_device_key(device_key), limits)
