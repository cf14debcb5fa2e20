"""A real Mosquitto for tests, on a free loopback port, never the system one on 1883.

``Broker`` writes its own config into a temporary folder (plain or TLS with
client certificates, optional ACL file, persistence on), starts
``/usr/sbin/mosquitto`` in the foreground, and can be SIGKILLed and started
again on the same port to simulate an outage. ``make_pki`` issues a test CA,
a server certificate for 127.0.0.1/localhost and client certificates with
openssl.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edge.errors import BrokerError
from edge.scenario.broker import SYSTEM_PORTS, find_mosquitto, free_port, start_mosquitto

MOSQUITTO = find_mosquitto()  # the demo's launcher, shared (edge.scenario.broker)
SYSTEM_PORT = SYSTEM_PORTS[0]


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    ca_key: Path
    server: TlsFiles
    clients: dict[str, TlsFiles]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(folder: Path, clients: tuple[str, ...] = ("dev-1",)) -> Pki:
    """A throw-away CA, a server cert (SAN 127.0.0.1, localhost) and client certs (CN=name)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
             "-subj", "/CN=edge-test-ca", cwd=folder)

    def issue(name: str, server: bool) -> TlsFiles:
        key, csr, crt = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
        ext = folder / f"{name}.ext"
        if server:
            ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                           "extendedKeyUsage=serverAuth\n")
        else:
            ext.write_text("extendedKeyUsage=clientAuth\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", cwd=folder)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext),
                 cwd=folder)
        return TlsFiles(ca=ca, cert=crt, key=key)

    server = issue("server", server=True)
    return Pki(ca=ca, ca_key=ca_key, server=server,
               clients={c: issue(c, server=False) for c in clients})


class Broker:
    """One Mosquitto process under test control."""

    def __init__(
        self,
        workdir: Path,
        *,
        tls: TlsFiles | None = None,
        acl: str | None = None,
        port: int | None = None,
    ) -> None:
        if MOSQUITTO is None:
            raise FileNotFoundError("mosquitto missing: apt-get install mosquitto")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        if self.port == SYSTEM_PORT:
            raise ValueError("tests must not use the system broker port 1883")
        self.tls = tls
        self.log_path = self.workdir / "mosquitto.log"
        self.config_path = self.workdir / "mosquitto.conf"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._atexit = False
        self._write_config(acl)

    def _write_config(self, acl: str | None) -> None:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            "per_listener_settings false",
            # Running as root, mosquitto would otherwise switch to the mosquitto user
            # and lose access to the private pytest tmp folder.
            "user root" if os.geteuid() == 0 else "",
            "persistence true",
            f"persistence_location {data}/",
            "autosave_interval 1",
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
            "max_queued_messages 100000",
            f"listener {self.port} {self.host}",
        ]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
                "require_certificate true",
                "use_identity_as_username true",
                "allow_anonymous false",
            ]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            acl_path = self.workdir / "acl"
            acl_path.write_text(acl)
            lines.append(f"acl_file {acl_path}")
        self.config_path.write_text("\n".join(x for x in lines if x) + "\n")

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("broker not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> Broker:
        if self.running:
            return self
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        if not self._atexit:
            # Safety net: a failing test never leaves a broker behind.
            atexit.register(self.kill)
            self._atexit = True
        with (self.workdir / "mosquitto.stderr").open("ab") as err:
            try:
                self._proc = start_mosquitto(self.config_path, self._listening, stderr=err,
                                             timeout=timeout)
            except BrokerError as e:
                raise RuntimeError(f"{e}: {self.tail()}") from e
        return self

    def _listening(self) -> bool:
        # The broker logs its listener once it is bound: no probe connection needed.
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return False
        return any(x.endswith(" running") for x in text.splitlines())

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no last persistence write."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._proc = None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None

    def tail(self, n: int = 40) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def log_text(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(errors="replace")
        return ""

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def have_mosquitto() -> bool:
    return MOSQUITTO is not None and shutil.which("openssl") is not None


class Subscriber:
    """A paho MQTT v5 consumer on its own loop thread that records every message.

    ``persistent=True`` keeps the session on the broker (clean start off, session
    expiry 1 h) as a central consumer would, so messages published while it is
    reconnecting after a broker restart are queued for it, not dropped.
    """

    def __init__(
        self,
        broker: Broker,
        topics: tuple[str, ...],
        *,
        tls: TlsFiles | None = None,
        client_id: str = "test-subscriber",
        persistent: bool = False,
    ) -> None:
        import threading

        from paho.mqtt import client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.messages: list[tuple[str, bytes, bool]] = []  # topic, payload, retained
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.1, 1)
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.cert),
                                keyfile=str(tls.key))

        def on_connect(c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
            c.subscribe([(t, 1) for t in topics])

        def on_subscribe(*_a: object) -> None:
            self._subscribed.set()

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            with self._cond:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
                self._cond.notify_all()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if persistent else 0
        self.client.connect(broker.host, broker.port, keepalive=10,
                            clean_start=not persistent, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("subscriber did not get SUBACK")

    def payloads(self, suffix: str) -> list[bytes]:
        with self._cond:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def wait_for(self, pred: object, timeout: float = 10.0) -> bool:
        """Wait until ``pred(self)`` is true."""
        assert callable(pred)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def barrier(self, topic: str, timeout: float = 10.0) -> bool:
        """Publish a marker on ``topic`` (one this subscriber receives) and wait for it.

        Mosquitto handles messages one at a time and delivers them to a subscription
        in order, so once the marker is back every message the broker had accepted
        before it (e.g. all a device published before it exited) has been delivered.
        """
        import uuid

        marker = f"barrier-{uuid.uuid4().hex}".encode()
        self.client.publish(topic, marker, qos=1)
        return self.wait_for(lambda s: any(p == marker for _t, p, _r in s.messages), timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
