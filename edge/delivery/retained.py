"""The retained-state cache: what the broker must keep saying about this device.

The status document and the other retained leaves (public figures, the LFR flag)
as their latest values; the link republishes them after every (re)connect and
builds the status payloads (online, offline, the Last Will) from here. Used only
on the link thread.
"""

from __future__ import annotations

from typing import Any

from edge.formats import canonical_json


class RetainedState:
    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.status: dict[str, Any] = {}
        self.leaves: dict[str, bytes] = {}

    def set_leaf(self, leaf: str, payload: bytes) -> bool:
        """Keep ``payload`` for ``leaf``; True if it changed (and so must be published)."""
        if self.leaves.get(leaf) == payload:
            return False
        self.leaves[leaf] = payload
        return True

    def status_payload(self, availability: str, reason: str | None = None) -> bytes:
        """The status document plus availability and device id (``reason`` overrides)."""
        status = dict(self.status)
        status["device_id"] = self.device_id
        status["availability"] = availability
        if reason is not None:
            status["reason"] = reason
        return canonical_json(status)
