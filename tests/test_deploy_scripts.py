"""Every shell script in deploy/ is shellcheck-clean; deploy/pki/pki.sh does what it says."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PKI = DEPLOY / "pki" / "pki.sh"


def shell_scripts() -> list[Path]:
    out = []
    for p in sorted(DEPLOY.rglob("*")):
        if not p.is_file():
            continue
        head = p.read_bytes()[:64]
        if p.suffix == ".sh" or head.startswith((b"#!/bin/sh", b"#!/bin/bash", b"#!/usr/bin/env bash")):
            out.append(p)
    return out


def test_the_scripts_are_found() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in shell_scripts()}
    assert {"install.sh", "pki/pki.sh", "deb/build-deb.sh"} <= names


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="apt-get install shellcheck")
@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_shellcheck_clean(script: Path) -> None:
    r = subprocess.run(["shellcheck", "--severity=style", str(script)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout
    assert script.stat().st_mode & 0o111, f"{script} is not executable"


def pki(d: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(PKI), str(d), *args], capture_output=True, text=True, timeout=60)
    assert (r.returncode == 0) == ok, r.stdout + r.stderr
    return r


def openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def test_pki_issues_verifies_and_revokes(tmp_path: Path) -> None:
    d = tmp_path / "ca"
    pki(d, "init")
    assert (d / "private" / "ca.key").stat().st_mode & 0o077 == 0
    pki(d, "init", ok=False)  # never overwrite a CA
    pki(d, "server", "broker.example.org", "IP:10.0.0.5")
    pki(d, "device", "dev-0001")
    pki(d, "consumer", "operator-consumer")
    pki(d, "device", "dev-0001", ok=False)  # one live certificate per identity
    for bad in ("dev/1", "dev+1", "#", "", "-lead"):
        pki(d, "device", bad, ok=False)
    crt = d / "issued" / "dev-0001.crt"
    assert (d / "issued" / "dev-0001.key").stat().st_mode & 0o077 == 0
    text = openssl("x509", "-in", str(crt), "-noout", "-text", "-subject")
    assert "CN = dev-0001" in text and "TLS Web Client Authentication" in text
    assert "CA:FALSE" in text
    srv = openssl("x509", "-in", str(d / "issued" / "broker.example.org.crt"), "-noout", "-text")
    assert "DNS:broker.example.org" in srv and "IP Address:10.0.0.5" in srv
    assert "TLS Web Server Authentication" in srv and "Client Authentication" not in srv
    ca = str(d / "ca.crt")
    assert "OK" in openssl("verify", "-CAfile", ca, "-crl_check", "-CRLfile", str(d / "crl.pem"),
                           str(crt))

    serial = openssl("x509", "-in", str(crt), "-noout", "-serial").strip().split("=")[1]
    pki(d, "revoke", "dev-0001")
    revoked = d / "issued" / f"dev-0001.{serial}.revoked.crt"
    assert revoked.is_file() and not crt.exists()
    crl = openssl("crl", "-in", str(d / "crl.pem"), "-noout", "-text")
    assert f"Serial Number: {serial}" in crl
    r = subprocess.run(["openssl", "verify", "-CAfile", ca, "-crl_check", "-CRLfile",
                        str(d / "crl.pem"), str(revoked)], capture_output=True, text=True)
    assert r.returncode != 0 and "revoked" in (r.stdout + r.stderr)
    pki(d, "device", "dev-0001")  # the id can be issued again after revocation
    pki(d, "revoke", "nobody", ok=False)
