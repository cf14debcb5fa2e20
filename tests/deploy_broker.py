"""The production broker config (deploy/broker) run for real, with certificates from deploy/pki.

``issue_pki`` drives ``deploy/pki/pki.sh`` (CA, broker certificate, device,
consumer and plugin-admin identities, one revoked device). ``DeployBroker`` copies
``deploy/broker/mosquitto.conf`` into a temporary folder, changing only what a
test must change: file paths, the listener's port and address, persistence,
logging and (as root) the user. Everything else, TLS, CRL, identities and the
dynamic-security plugin, is the file we ship; the plugin's grants are made by
``deploy/broker/dynsec.sh`` from ``deploy/broker/acl``, as an operator would.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge.scenario.broker import free_port, start_mosquitto

ROOT = Path(__file__).resolve().parents[1]
PKI_SH = ROOT / "deploy" / "pki" / "pki.sh"
BROKER_DIR = ROOT / "deploy" / "broker"
DYNSEC_SH = BROKER_DIR / "dynsec.sh"
PROD_ETC = "/etc/mosquitto/edge/"
PROD_DYNSEC = "/var/lib/mosquitto/dynamic-security.json"


@dataclass(frozen=True)
class Identity:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class DeployPki:
    dir: Path
    ca: Path
    crl: Path
    server: Identity
    ids: dict[str, Identity]
    users: tuple[str, ...]  # identities with a "user" block in the acl; the rest are devices
    admin: tuple[str, Identity]  # the dynamic-security plugin's administrator
    revoked: Identity


def pki(dir_: Path, *args: str) -> str:
    proc = subprocess.run([str(PKI_SH), str(dir_), *args], check=True, capture_output=True,
                          text=True)
    return proc.stdout


def issue_pki(dir_: Path, devices: tuple[str, ...] = ("dev-a", "dev-b"),
              consumer: str = "operator-consumer", revoked: str = "dev-revoked",
              admin: str = "broker-admin") -> DeployPki:
    pki(dir_, "init")
    pki(dir_, "server", "localhost", "IP:127.0.0.1")
    names = (*devices, consumer, revoked, admin)
    for name in names:
        pki(dir_, "consumer" if name in (consumer, admin) else "device", name)
    issued = dir_ / "issued"
    ca = dir_ / "ca.crt"
    ids = {n: Identity(ca, issued / f"{n}.crt", issued / f"{n}.key") for n in names}
    pki(dir_, "revoke", revoked)
    crt = next(issued.glob(f"{revoked}.*.revoked.crt"))
    key = crt.with_name(crt.name.replace(".crt", ".key"))
    del ids[revoked]
    admin_id = ids.pop(admin)
    return DeployPki(dir=dir_, ca=ca, crl=dir_ / "crl.pem",
                     server=Identity(ca, issued / "localhost.crt", issued / "localhost.key"),
                     ids=ids, users=(consumer,), admin=(admin, admin_id),
                     revoked=Identity(ca, crt, key))


def render_test_config(text: str, etc: Path, port: int, log: Path, dynsec: Path) -> str:
    """The shipped config with test paths, a loopback port, no persistence."""
    out = text.replace(PROD_ETC, f"{etc}/")
    out, n = re.subn(rf"^plugin_opt_config_file {re.escape(PROD_DYNSEC)}$",
                     f"plugin_opt_config_file {dynsec}", out, flags=re.M)
    assert n == 1, f"deploy/broker/mosquitto.conf must keep the plugin's state in {PROD_DYNSEC}"
    out, n = re.subn(r"^listener 8883$", f"listener {port} 127.0.0.1", out, flags=re.M)
    assert n == 1, "deploy/broker/mosquitto.conf must hold exactly one 'listener 8883'"
    out = re.sub(r"^persistence true$", "persistence false", out, flags=re.M)
    out = re.sub(r"^persistence_location .*$", "", out, flags=re.M)
    extra = [f"log_dest file {log}", "log_type all"]
    if os.geteuid() == 0:
        extra.append("user root")  # else mosquitto drops to its user and cannot read tmp
    return "\n".join(extra) + "\n" + out


class DeployBroker:
    def __init__(self, workdir: Path, p: DeployPki) -> None:
        self.workdir = workdir
        etc = workdir / "etc"
        etc.mkdir(parents=True)
        for src, dst in ((p.ca, "ca.crt"), (p.crl, "crl.pem"), (p.server.cert, "broker.crt"),
                         (p.server.key, "broker.key")):
            (etc / dst).write_bytes(src.read_bytes())
        self.etc = etc
        self.pki = p
        self.dynsec = workdir / "dynamic-security.json"
        dynsec(None, "init", str(self.dynsec), p.admin[0])
        self.host = "127.0.0.1"
        self.port = free_port()
        self.log = workdir / "mosquitto.log"
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(render_test_config((BROKER_DIR / "mosquitto.conf").read_text(), etc,
                                                  self.port, self.log, self.dynsec))
        admin = p.admin[1]
        self.ctrl_options = workdir / "mosquitto_ctrl.options"
        self.ctrl_options.write_text(f"--cafile {admin.ca}\n--cert {admin.cert}\n--key {admin.key}\n"
                                     f"-h localhost\n-p {self.port}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DeployBroker:
        self.proc = start_mosquitto(self.config, lambda: " running" in self.log_text(),
                                    stderr=subprocess.PIPE)
        try:
            return self.provision()
        except BaseException:
            self.stop()
            raise

    def provision(self) -> DeployBroker:
        """Grant every identity of the PKI its ACLs through the plugin, as an operator would."""
        for name in self.pki.ids:
            self.ctrl("user" if name in self.pki.users else "device", name)
        return self

    def ctrl(self, *args: str) -> str:
        """deploy/broker/dynsec.sh against this broker, as the plugin's administrator."""
        return dynsec(self.ctrl_options, *args)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def listening_ports(self) -> set[int]:
        """TCP ports the broker process listens on, read from /proc (no probing)."""
        assert self.proc is not None
        inodes = set()
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports: set[int] = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        return ports


def dynsec(options: Path | None, *args: str) -> str:
    opts = ["-o", str(options)] if options is not None else []
    proc = subprocess.run([str(DYNSEC_SH), *opts, *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"dynsec.sh {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def tls_context(ident: Identity | None, ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    if ident is not None:
        ctx.load_cert_chain(str(ident.cert), str(ident.key))
    return ctx
