"""MQTT topic names, as one value: ``<prefix>/<leaf>``, the prefix normalised once.

A device's prefix is ``[broker] topic_prefix`` or ``edge/<device id>``; the link, the
runner, ``edge selftest``, ``edge alerts`` and the ACL tests all take their names
from here, so the broker ACL (``deploy/broker/acl``) and the code cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "edge"  # the fleet's topic root; a device's default prefix is ROOT/<device id>
# The leaves a device reads (subscribes to); the broker ACL grants exactly these as ``read``.
READS: tuple[str, ...] = ("bundle", "review", "order", "revocations", "resume")


def _normalise(prefix: str) -> str:
    return prefix.rstrip("/")


@dataclass(frozen=True)
class Topics:
    prefix: str

    @classmethod
    def for_device(cls, device_id: str, prefix: str | None = None) -> Topics:
        return cls(_normalise(prefix or f"{ROOT}/{device_id}"))

    def leaf(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    # What the device writes ...
    @property
    def alerts(self) -> str:
        return self.leaf("alerts")

    @property
    def status(self) -> str:
        return self.leaf("status")

    @property
    def stats(self) -> str:
        return self.leaf("stats")

    @property
    def checkpoint(self) -> str:
        return self.leaf("audit/checkpoint")

    # ... what it reads ...
    @property
    def bundle(self) -> str:
        return self.leaf("bundle")

    @property
    def review(self) -> str:
        return self.leaf("review")

    @property
    def order(self) -> str:
        """Retained signed deployment order (as well as the order file)."""
        return self.leaf("order")

    @property
    def revocations(self) -> str:
        """Retained signed revocation list of order ids."""
        return self.leaf("revocations")

    @property
    def resume(self) -> str:
        """Signed resume: the only way a false-alert suspension is lifted."""
        return self.leaf("resume")

    # ... and both, for the selftest's round trip.
    @property
    def selftest(self) -> str:
        return self.leaf("selftest")


def fleet_filter(leaf: str, root: str = ROOT) -> str:
    """Every device's ``leaf`` under ``root`` (``edge/+/alerts``): what a consumer subscribes to."""
    return f"{_normalise(root)}/+/{leaf}"
