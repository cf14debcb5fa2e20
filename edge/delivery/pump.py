"""The outbox pump: pending outbox events onto a live connection, PUBACKs back into the outbox.

At least once: an event leaves the outbox only on a PUBACK with a success reason
code. A refused one (e.g. 0x87 not authorised) stays, is counted and retried after
``refused_retry_s`` and after every reconnect. Used only on the link thread; the
counters are read by other threads under the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from edge.delivery.outbox import Outbox

log = logging.getLogger(__name__)


class Connection(Protocol):
    """The part of a connection the pump uses (``mqtt._Conn``)."""

    client: Any  # paho.mqtt.client.Client
    lost: bool
    last_sent: int  # highest outbox id handed to this connection
    inflight: dict[int, int]  # mid -> outbox id


class OutboxPump:
    def __init__(self, outbox: Outbox, *, max_inflight: int, refused_retry_s: float,
                 on_ack: Callable[[int], None] | None = None) -> None:
        self.outbox = outbox
        self.max_inflight = max_inflight
        self.refused_retry_s = refused_retry_s
        self._on_ack = on_ack
        self.refused_ids: dict[int, float] = {}  # outbox id -> retry time
        self.lock = threading.Lock()
        self.delivered = 0
        self.refused = 0
        self.last_refusal: str | None = None

    def connected(self) -> None:
        """A reconnect replays every pending event, refused ones included."""
        self.refused_ids.clear()

    def next_retry(self) -> list[float]:
        return list(self.refused_ids.values())

    def pump(self, conn: Connection, now: float) -> None:
        room = self.max_inflight - len(conn.inflight)
        if room <= 0:
            return
        due = [i for i, t in self.refused_ids.items() if t <= now]
        for event_id in due[:room]:
            del self.refused_ids[event_id]
            ev = self.outbox.get(event_id)
            if ev is not None:
                self._send(conn, ev.id, ev.topic, ev.payload, ev.qos)
                room -= 1
        if room <= 0:
            return
        for ev in self.outbox.pending(after_id=conn.last_sent, limit=room):
            conn.last_sent = ev.id
            if ev.id in self.refused_ids:
                continue  # waits for its retry time
            if not self._send(conn, ev.id, ev.topic, ev.payload, ev.qos):
                break

    def _send(self, conn: Connection, event_id: int, topic: str, payload: bytes, qos: int) -> bool:
        info = conn.client.publish(topic, payload, qos=qos)
        if info.rc != 0:
            conn.lost = True
            return False
        if qos == 0:
            self.outbox.ack(event_id)  # QoS 0 has no PUBACK: handed to the socket is all
        else:
            conn.inflight[info.mid] = event_id
        return True

    def published(self, conn: Connection, mid: int, reason: Any) -> None:
        """The broker's PUBACK for ``mid`` (paho's reason code)."""
        event_id = conn.inflight.pop(mid, None)
        if event_id is None:
            return  # status or QoS 0 telemetry
        if reason.is_failure:
            with self.lock:
                self.refused += 1
                self.last_refusal = f"event {event_id}: {reason} (0x{reason.value:02x})"
            log.error("mqtt: broker REFUSED outbox event %d: %s (0x%02x); kept in the outbox,"
                      " %d refusals so far", event_id, reason, reason.value, self.refused)
            self.refused_ids[event_id] = time.monotonic() + self.refused_retry_s
            return
        self.outbox.ack(event_id)
        self.refused_ids.pop(event_id, None)
        with self.lock:
            self.delivered += 1
        if self._on_ack is not None:
            self._on_ack(event_id)

    def drained(self, conn: Connection | None, connected: bool) -> bool:
        """Nothing left to send (the whole outbox if not connected)."""
        if conn is None or not connected:
            return self.outbox.pending(limit=1) == []
        return not conn.inflight and not self.outbox.pending(after_id=conn.last_sent, limit=1)
