"""The MQTT link: paho-mqtt 2.x (MQTT v5, TLS client certificates) on one thread.

This module is the connection (paho client lifecycle, reconnect backoff, the
thread's loop); what it sends comes from the outbox pump (``pump.OutboxPump``)
and the retained-state cache (``retained.RetainedState``).

Every paho call happens on the link's own thread, which runs paho's external
event loop (``loop_read``/``loop_write``/``loop_misc`` around our own
``select``). Other threads never touch the client: they write to the durable
outbox, or hand commands through a queue, and wake the thread through a
socket pair, so an alert is published without waiting for a poll interval.

Delivery is at least once. After every (re)connect the pending outbox events
are published in insertion order; an event leaves the outbox only on a PUBACK
with a success reason code. A failure reason code (e.g. 0x87 not authorised)
keeps the event, is counted and logged as an error, and the event is retried
after ``refused_retry_s`` and after each reconnect. Each connection uses a
fresh paho client, so paho never replays its own in-flight copies on top of ours.
The broker side of the session is persistent (fixed client id, ``clean_start=False``,
a session expiry of days): what the centre sends while the device is offline (QoS 1
reviews, bundles, orders) is queued by the broker and delivered on reconnect.

The retained ``<prefix>/status`` is republished on every connect; its Last
Will, and the last message of a clean ``close``, say ``offline``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.backoff import backoff_delay
from edge.config import BrokerConfig, StatsConfig
from edge.delivery.outbox import Outbox, OutboxStats
from edge.delivery.pump import OutboxPump
from edge.delivery.retained import RetainedState
from edge.delivery.topics import READS, Topics
from edge.errors import BrokerError
from edge.formats import canonical_json

log = logging.getLogger(__name__)

StatusDict = dict[str, Any]
MessageHandler = Callable[[str, bytes], None]


@dataclass(frozen=True)
class LinkConfig:
    """The broker section; field names and defaults are those of ``[broker]`` (``BrokerConfig``)."""

    device_id: str
    host: str = BrokerConfig.host
    port: int = BrokerConfig.port
    tls: bool = BrokerConfig.tls
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    topic_prefix: str | None = None  # default edge/<device_id> (see ``Topics``)
    keepalive: int = BrokerConfig.keepalive
    client_id: str | None = None  # fixed (default edge-<device id>): the session is found again
    session_expiry_s: int = BrokerConfig.session_expiry_s
    reconnect_max_s: float = BrokerConfig.reconnect_max_s  # backoff cap
    connect_timeout_s: float = 5.0
    backoff_min_s: float = 0.5
    max_inflight: int = 20
    refused_retry_s: float = 60.0
    stats_interval_s: float = StatsConfig.interval_s
    stats_qos: int = 0
    subscriptions: tuple[str, ...] = READS

    @property
    def topics(self) -> Topics:
        return Topics.for_device(self.device_id, self.topic_prefix)


@dataclass(frozen=True)
class LinkHealth:
    """What the status topic and ``systemctl status`` say about delivery."""

    state: str  # connected | connecting | backoff | stopped
    connected: bool
    connects: int
    delivered: int
    refused: int
    last_refusal: str | None
    last_error: str | None
    inflight: int
    outbox: OutboxStats
    retained_reviews_refused: int = 0  # refused at the link: a review is never retained

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "outbox"}
        d["outbox"] = dict(self.outbox.__dict__)
        return d


@dataclass
class _Conn:
    """State of one connection attempt; replaced wholesale on reconnect."""

    client: Any  # paho.mqtt.client.Client (paho ships no stubs)
    connack_deadline: float
    connected: bool = False
    lost: bool = False
    last_sent: int = 0
    inflight: dict[int, int] = field(default_factory=dict)  # mid -> outbox id
    why: str = ""
    log_error: str = ""
    closing_mid: int | None = None
    closing_acked: bool = False


class MqttLink:
    def __init__(
        self,
        config: LinkConfig,
        outbox: Outbox,
        on_message: MessageHandler | None = None,
        stats_provider: Callable[[], dict[str, Any]] | None = None,
        on_ack: Callable[[int], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if config.tls and (config.ca is None or config.cert is None or config.key is None):
            raise BrokerError("TLS needs ca, cert and key paths (or tls = false)")
        self.config = config
        self.outbox = outbox
        self._on_message = on_message
        self._stats_provider = stats_provider
        self.pump = OutboxPump(outbox, max_inflight=config.max_inflight,
                               refused_retry_s=config.refused_retry_s, on_ack=on_ack)
        self.retained = RetainedState(config.device_id)
        self._rng = rng or random.Random()
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conn: _Conn | None = None
        self._attempt = 0
        self._next_attempt = 0.0
        self._next_stats = 0.0
        self._stopping = False
        self._drain_deadline = 0.0
        self._tick = time.monotonic()
        self._state = "stopped"
        self._connects = 0
        self._retained_reviews_refused = 0
        self._last_error: str | None = None

    # --- API for other threads -------------------------------------------------------

    def start(self) -> MqttLink:
        if self._thread is not None:
            return self
        self._state = "connecting"
        self._next_stats = time.monotonic() + self.config.stats_interval_s
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()
        return self

    def queue_alert(self, build: Callable[[int], bytes],
                    journal: Callable[[int], bytes] | None = None) -> tuple[int, int]:
        """Persist an alert built by ``build(seq)`` and wake the link; returns (outbox id, seq).

        ``journal``: see ``Outbox.put_alert``. Raises :class:`OutboxFullError` when the
        outbox refuses it (nothing is consumed).
        """
        event_id, seq = self.outbox.put_alert(self.config.topics.alerts, build, journal=journal)
        self.wake()
        return event_id, seq

    def publish_stats(self, stats: dict[str, Any]) -> int | None:
        payload = canonical_json(stats)
        event_id = self.outbox.put("stats", self.config.topics.stats, payload,
                                   self.config.stats_qos)
        self.wake()
        return event_id

    def set_status(self, status: StatusDict) -> None:
        """Replace the retained status (the link adds availability and device id)."""
        self._commands.put(("status", dict(status)))
        self.wake()

    def set_retained(self, leaf: str, document: dict[str, Any]) -> None:
        """Keep ``<prefix>/<leaf>`` set to ``document`` (retained), republished on every connect.

        For public, non-biometric state such as the transparency figures and the
        "live facial recognition active" flag; the latest value wins.
        """
        payload = canonical_json(document)
        self._commands.put(("retained", (leaf, payload)))
        self.wake()

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def alive(self, max_silence_s: float = 10.0) -> bool:
        """For the watchdog: the thread runs and its loop turned recently."""
        t = self._thread
        return t is not None and t.is_alive() and time.monotonic() - self._tick < max_silence_s

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.connected

    def health(self) -> LinkHealth:
        conn = self._conn
        p = self.pump
        with self._lock, p.lock:
            return LinkHealth(
                state=self._state,
                connected=conn is not None and conn.connected,
                connects=self._connects,
                delivered=p.delivered,
                refused=p.refused,
                last_refusal=p.last_refusal,
                last_error=self._last_error,
                inflight=len(conn.inflight) if conn is not None else 0,
                outbox=self.outbox.stats(),
                retained_reviews_refused=self._retained_reviews_refused,
            )

    def close(self, drain_timeout: float = 5.0) -> bool:
        """Try to flush the outbox, publish ``offline``, disconnect; True if all was sent."""
        t = self._thread
        if t is None:
            self._wake_r.close()
            self._wake_w.close()
            return self.outbox.pending(limit=1) == []
        self._drain_deadline = time.monotonic() + drain_timeout
        self._stopping = True
        self.wake()
        t.join(drain_timeout + self.config.connect_timeout_s + 5.0)
        if t.is_alive():
            log.error("mqtt link thread did not stop")
            return False
        self._thread = None
        self._wake_r.close()
        self._wake_w.close()
        return self.outbox.pending(limit=1) == []

    # --- the link thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._tick = now = time.monotonic()
            try:
                self._drain_commands()
                if self._stopping and self._drain_done(now):
                    break
                conn = self._conn
                if conn is None:
                    if now >= self._next_attempt:
                        self._connect(now)
                    else:
                        self._wait(min(1.0, self._next_attempt - now))
                    continue
                if conn.lost or (not conn.connected and now > conn.connack_deadline):
                    self._drop("connection lost" if conn.lost else "no CONNACK in time")
                    continue
                if conn.connected:
                    self.pump.pump(conn, now)
                    self._maybe_stats(now)
                self._io(conn)
            except Exception as e:  # the link must outlive any bug in one turn
                log.exception("mqtt link: unexpected error; reconnecting")
                self._last_error = f"{type(e).__name__}: {e}"
                self._drop(self._last_error)
        self._shutdown()

    def _drain_done(self, now: float) -> bool:
        if now >= self._drain_deadline:
            return True
        conn = self._conn
        return self.pump.drained(conn, conn is not None and conn.connected)

    def _wait(self, timeout: float) -> None:
        r, _, _ = select.select([self._wake_r], [], [], max(0.0, timeout))
        if r:
            self._drain_wake()

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_r.recv(4096):
                pass

    def _drain_commands(self) -> None:
        while True:
            try:
                name, arg = self._commands.get_nowait()
            except queue.Empty:
                return
            conn = self._conn
            if name == "status":
                self.retained.status = arg
                if conn is not None and conn.connected:
                    self._publish_status(conn, "online")
            elif name == "retained":
                leaf, payload = arg
                changed = self.retained.set_leaf(leaf, payload)
                if changed and conn is not None and conn.connected:
                    conn.client.publish(self.config.topics.leaf(leaf), payload, qos=1, retain=True)

    def _io(self, conn: _Conn) -> None:
        client = conn.client
        sock = client.socket()
        if sock is None:
            conn.lost = True
            return
        # TLS may hold decrypted bytes that select() cannot see.
        buffered = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        wlist = [sock] if client.want_write() else []
        timeout = 0.0 if buffered else self._idle_timeout()
        r, w, _ = select.select([sock, self._wake_r], wlist, [], timeout)
        if self._wake_r in r:
            self._drain_wake()
        if (sock in r or buffered) and client.loop_read() != 0:
            conn.lost = True
            return
        if sock in w and client.socket() is not None and client.loop_write() != 0:
            conn.lost = True
            return
        if client.socket() is None or client.loop_misc() != 0:
            conn.lost = True

    def _idle_timeout(self) -> float:
        """How long the loop may sleep: wake for the next stats or refused-event retry."""
        now = time.monotonic()
        due = [now + 1.0]
        if self._stats_provider is not None:
            due.append(self._next_stats)
        due += self.pump.next_retry()
        return max(0.0, min(due) - now)

    # --- connection -------------------------------------------------------------

    def _connect(self, now: float) -> None:
        from paho.mqtt import client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        cfg = self.config
        self._state = "connecting"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"edge-{cfg.device_id}",
            protocol=mqtt.MQTTv5,
        )
        client.connect_timeout = cfg.connect_timeout_s
        client.enable_logger(logging.getLogger("edge.delivery.paho"))
        client.max_inflight_messages_set(max(cfg.max_inflight, 1) + 2)
        conn = _Conn(client=client, connack_deadline=now + cfg.connect_timeout_s)
        client.on_connect = self._guard(self._on_connect, conn)
        client.on_disconnect = self._guard(self._on_disconnect, conn)
        client.on_publish = self._guard(self._on_publish, conn)
        client.on_message = self._guard(self._on_message_cb, conn)
        client.on_subscribe = self._guard(self._on_subscribe, conn)
        client.on_log = self._guard(self._on_log, conn)
        will = self.retained.status_payload("offline", reason="connection lost")
        client.will_set(cfg.topics.status, will, qos=1, retain=True)
        try:
            if cfg.tls:
                client.tls_set(
                    ca_certs=str(cfg.ca), certfile=str(cfg.cert), keyfile=str(cfg.key),
                    cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = cfg.session_expiry_s
            client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive, clean_start=False,
                           properties=props)
        except (OSError, ValueError, ssl.SSLError) as e:
            self._last_error = f"connect to {cfg.host}:{cfg.port}: {e}"
            log.warning("mqtt: %s", self._last_error)
            self._schedule_retry(now)
            return
        self._conn = conn

    def _schedule_retry(self, now: float) -> None:
        cfg = self.config
        delay = backoff_delay(self._attempt, cfg.backoff_min_s, cfg.reconnect_max_s,
                              self._rng.random())
        self._attempt = min(self._attempt + 1, 30)
        self._next_attempt = now + delay
        self._state = "backoff"
        log.info("mqtt: next connection attempt in %.2f s", delay)

    def _drop(self, why: str) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            sock = conn.client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
            if conn.connected:
                log.warning("mqtt: disconnected (%s); %d events pending in the outbox",
                            why, self.outbox.depth())
            else:
                detail = f": {conn.why}" if conn.why else ""
                detail += f"; {conn.log_error}" if conn.log_error else ""
                self._last_error = (f"{self.config.host}:{self.config.port} closed the"
                                    f" connection before CONNACK ({why}{detail}); check TLS"
                                    " certificates and broker logs")
                log.warning("mqtt: %s", self._last_error)
        self._schedule_retry(time.monotonic())

    def _guard(self, fn: Callable[..., None], conn: _Conn) -> Callable[..., None]:
        def wrapped(*args: Any) -> None:
            try:
                fn(conn, *args)
            except Exception as e:
                log.exception("mqtt: error in callback %s", fn.__name__)
                self._last_error = f"{fn.__name__}: {type(e).__name__}: {e}"

        return wrapped

    # --- paho callbacks (run on the link thread, inside loop_read/loop_write) ----

    def _on_connect(self, conn: _Conn, client: Any, _ud: Any, _flags: Any,
                    reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._last_error = f"broker refused the connection: {reason}"
            log.error("mqtt: %s", self._last_error)
            conn.lost = True
            return
        conn.connected = True
        self._attempt = 0
        with self._lock:
            self._connects += 1
            self._state = "connected"
        log.info("mqtt: connected to %s:%d; %d events pending", self.config.host,
                 self.config.port, self.outbox.depth())
        # Subscribe before anything is published: the broker handles one client's packets
        # in order, so whoever sees "online" may send a bundle, order or review at once and
        # it meets an active subscription (a message sent before it would be dropped).
        topics = [(self.config.topics.leaf(leaf), 1) for leaf in self.config.subscriptions]
        if topics:
            client.subscribe(topics)
        self._publish_status(conn, "online")
        for leaf, payload in self.retained.leaves.items():
            client.publish(self.config.topics.leaf(leaf), payload, qos=1, retain=True)
        self.pump.connected()

    def _on_disconnect(self, conn: _Conn, _client: Any, _ud: Any, _flags: Any,
                       reason: Any, _props: Any) -> None:
        conn.lost = True
        conn.why = str(reason)
        if conn.connected:
            self._last_error = f"disconnected: {reason}"

    def _on_log(self, conn: _Conn, _client: Any, _ud: Any, level: int, text: str) -> None:
        if level == 0x08:  # LogLevel.MQTT_LOG_ERR: e.g. the TLS alert that explains a refusal
            conn.log_error = text

    def _on_subscribe(self, _conn: _Conn, _client: Any, _ud: Any, _mid: int,
                      reasons: Any, _props: Any) -> None:
        for rc in reasons:
            if rc.is_failure:
                log.error("mqtt: subscription refused: %s", rc)

    def _on_message_cb(self, _conn: _Conn, _client: Any, _ud: Any, msg: Any) -> None:
        if msg.retain and str(msg.topic) == self.config.topics.review:
            # A review is a one-off decision: a retained one would be re-applied to every
            # device session that subscribes later, so it is never taken.
            log.error("retained message on %s refused: reviews are never retained", msg.topic)
            with self._lock:
                self._retained_reviews_refused += 1
            return
        if self._on_message is not None:
            self._on_message(str(msg.topic), bytes(msg.payload))

    def _on_publish(self, conn: _Conn, _client: Any, _ud: Any, mid: int,
                    reason: Any, _props: Any) -> None:
        if mid == conn.closing_mid:
            conn.closing_acked = True
            return
        self.pump.published(conn, mid, reason)

    # --- publishing (link thread) ----------------------------------------------

    def _publish_status(self, conn: _Conn, availability: str, reason: str | None = None) -> int:
        payload = self.retained.status_payload(availability, reason)
        info = conn.client.publish(self.config.topics.status, payload, qos=1, retain=True)
        return int(info.mid)

    def _maybe_stats(self, now: float) -> None:
        if self._stats_provider is None or self._stopping or now < self._next_stats:
            return
        self._next_stats = now + self.config.stats_interval_s
        self.publish_stats(self._stats_provider())

    def _shutdown(self) -> None:
        conn = self._conn
        if conn is not None and conn.connected and not conn.lost:
            try:
                conn.closing_mid = self._publish_status(conn, "offline", "shutdown")
                deadline = time.monotonic() + 2.0
                while not conn.closing_acked and not conn.lost and time.monotonic() < deadline:
                    self._io(conn)
                conn.client.disconnect()
            except Exception:
                log.exception("mqtt: error while disconnecting")
        self._conn = None
        with self._lock:
            self._state = "stopped"
        left = self.outbox.depth()
        if left:
            log.warning("mqtt: stopped with %d events left in the outbox (sent after restart)",
                        left)
