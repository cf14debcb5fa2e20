"""The station's MQTT side: a persistent v5 session in, signed reviews out.

One client with a fixed client id, ``clean_start=False`` and a session expiry
of days, subscribed at QoS 1 to every device's alerts, status, stats,
transparency and audit checkpoints: whatever is published while the station
is down waits in its broker session. Messages are acknowledged by hand, only
after they are committed to the database (or refused and recorded), so a
crash between delivery and commit means a redelivery, never a loss; the
event_id primary key makes the redelivery harmless. If the database fails,
the client disconnects without acknowledging and reconnects later.

Reviews waiting in the database's outbox (``reviews`` without
``published_at``) are published at QoS 1, not retained, to
``<prefix>/<device>/review`` and marked published on PUBACK.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.exc import SQLAlchemyError

from station.config import BrokerConfig
from station.store import Store

log = logging.getLogger(__name__)

LEAVES = ("alerts", "status", "stats", "transparency", "audit/checkpoint")
MAX_BATCH = 200


class Ingest:
    def __init__(self, cfg: BrokerConfig, store: Store, *, clock: Callable[[], float] = time.time,
                 on_change: Callable[[], None] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.on_change = on_change
        self.counts = {"stored": 0, "duplicate": 0, "refused": 0}
        self._inbox: queue.Queue[tuple[int, int, int, str, bytes]] = queue.Queue()
        self._generation = 0
        self.connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._inflight: dict[int, int] = {}  # mid -> review id
        self._early: set[int] = set()  # mids acknowledged before they were recorded
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=mqtt.MQTTv5)
        c.manual_ack_set(True)
        c.reconnect_delay_set(1, 5)
        if cfg.tls:
            c.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None,
                      keyfile=cfg.key_file or None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        self.client = c
        self._publisher = threading.Thread(target=self._publish_loop, name="station-reviews", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="station-writer", daemon=True)

    def start(self) -> Ingest:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.cfg.session_expiry_days * 86400
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=30, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        self._publisher.start()
        self._writer.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.client.disconnect()
        self.client.loop_stop()
        for t in (self._publisher, self._writer):
            if t.is_alive():
                t.join(5)

    def wake(self) -> None:
        """Publish queued reviews now (called after a decision)."""
        self._wake.set()

    # --- callbacks ----------------------------------------------------------------------

    def _on_connect(self, client: Any, _ud: Any, _flags: Any, rc: Any, _props: Any) -> None:
        if rc.is_failure:
            log.error("station: broker refused the connection: %s", rc)
            return
        p = self.cfg.prefix
        self._generation += 1
        client.subscribe([(f"{p}/+/{leaf}", 1) for leaf in LEAVES])
        with self._lock:
            self._inflight.clear()  # unacknowledged reviews are published again
            self._early.clear()
        self.connected.set()
        self._wake.set()
        log.info("station: connected to %s:%d as %s", self.cfg.host, self.cfg.port, self.cfg.client_id)

    def _on_disconnect(self, _c: Any, _ud: Any, _flags: Any, rc: Any, _props: Any) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("station: disconnected from the broker (%s); reconnecting", rc)

    def _on_message(self, _client: Any, _ud: Any, msg: Any) -> None:
        # Handed to the writer; acknowledged only once committed (see _write_loop).
        self._inbox.put((self._generation, int(msg.mid), int(msg.qos), str(msg.topic), bytes(msg.payload)))

    def _write_loop(self) -> None:
        """Store messages in batches, one transaction each, then acknowledge them.

        The broker keeps at most its in-flight window of unacknowledged messages
        outstanding, so a batch is what arrived since the last commit: under load
        one fsync covers many alerts, when idle each message is committed alone.
        """
        while not self._stop.is_set():
            try:
                batch = [self._inbox.get(timeout=0.5)]
            except queue.Empty:
                continue
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            items = []
            for _gen, _mid, _qos, topic, payload in batch:
                device, _, leaf = topic.removeprefix(self.cfg.prefix + "/").partition("/")
                items.append((device, leaf, payload))
            try:
                outcomes = self.store.ingest(items, self.clock())
            except SQLAlchemyError as exc:
                log.error("station: database failed on %d message(s), not acknowledged: %s", len(batch), exc)
                self.client.disconnect()  # the broker redelivers them from our session
                continue
            for (gen, mid, qos, topic, _p), outcome in zip(batch, outcomes, strict=True):
                if outcome in self.counts:
                    self.counts[outcome] += 1
                if outcome == "refused":
                    log.error("station: alert on %s refused (see the audit page)", topic)
                # A message from an earlier connection is redelivered on this one: its old
                # packet id must not be acknowledged here.
                if qos > 0 and gen == self._generation:
                    self.client.ack(mid, qos)
            if self.on_change is not None:
                self.on_change()

    def _on_publish(self, _c: Any, _ud: Any, mid: int, rc: Any, _props: Any) -> None:
        with self._lock:
            review_id = self._inflight.get(mid)
            if review_id is None and not rc.is_failure:
                self._early.add(mid)  # acknowledged before the publishing thread recorded it
        if review_id is None:
            return
        if rc.is_failure:
            log.error("station: review %d refused by the broker: %s", review_id, rc)
        else:
            self._published(review_id)
        with self._lock:  # only now, so the publisher does not send it again meanwhile
            self._inflight.pop(mid, None)

    def _published(self, review_id: int) -> None:
        self.store.mark_published(review_id, self.clock())
        if self.on_change is not None:
            self.on_change()

    # --- reviews out --------------------------------------------------------------------

    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(2.0)
            self._wake.clear()
            if not self.connected.is_set():
                continue
            try:
                pending = self.store.unpublished()
            except SQLAlchemyError as exc:
                log.error("station: cannot read the review outbox: %s", exc)
                continue
            with self._lock:
                busy = set(self._inflight.values())
            for review_id, device, envelope in pending:
                if review_id in busy:
                    continue
                # Never hold our lock across publish(): paho's network thread may hold its own
                # while it waits for ours in on_publish. A PUBACK that beats the bookkeeping
                # below is kept in ``_early`` instead.
                info = self.client.publish(f"{self.cfg.prefix}/{device}/review", envelope, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    continue
                with self._lock:
                    acked = info.mid in self._early
                    self._early.discard(info.mid)
                    if not acked:
                        self._inflight[info.mid] = review_id
                if acked:
                    self._published(review_id)
