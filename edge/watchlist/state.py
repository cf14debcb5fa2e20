"""Device state on disk: the active bundle, the accepted trust root, and the record of
what was accepted.

Layout of the bundle state directory::

    state.json          version, issued_at, content hash, bundle file name and file hash
    bundle-<sha>.bin    the active bundle, exactly as received

and of the trust state directory (:class:`TrustStore`)::

    trust-state.json    version, content hash and the document of the accepted trust root

``state.json`` is the single switch: it is replaced atomically only after the
new bundle file is durable, and the old file is removed only after the switch.
A crash at any point therefore leaves either the old or the new pair, and the
recorded version always belongs to the file it names. Verification itself is
pure (``VerificationContext.verify_bundle``); this class only stages, swaps and reads.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge.errors import MalformedError, SignedDocumentError, StateError
from edge.fsutil import atomic_write, create_new, fsync_dir, read_optional, write_all
from edge.watchlist import canonical
from edge.watchlist.bundle import (
    StateRecord,
    VerifiedBundle,
)
from edge.watchlist.context import VerificationContext
from edge.watchlist.trust import MAX_TRUST_HEADER, TrustRoot, load_pinned, rotate

STATE_FILE = "state.json"
TRUST_STATE_FILE = "trust-state.json"


@dataclass(frozen=True)
class Installed:
    record: StateRecord
    file: str
    file_sha256: str


class BundleStore:
    """Stage, verify, swap; the active bundle survives every failed or interrupted install."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)

    def installed(self) -> Installed | None:
        path = self.dir / STATE_FILE
        raw = read_optional(path)
        if raw is None:
            return None
        try:
            f = canonical.Fields(canonical.loads_object(raw, "device state"), "device state")
            record = StateRecord(
                version=f.integer("version"),
                issued_at=f.time("issued_at"),
                content_sha256=f.text("content_sha256"),
                bundle_id=f.text("bundle_id"),
            )
            return Installed(record, f.text("file"), f.text("file_sha256"))
        except MalformedError as exc:
            raise StateError(f"{path} is corrupt: {exc}") from exc

    def state(self) -> StateRecord | None:
        inst = self.installed()
        return inst.record if inst else None

    def active_bytes(self) -> bytes | None:
        """The active bundle's bytes, checked against the hash recorded with them."""
        inst = self.installed()
        if inst is None or inst.file == PURGED:
            return None
        path = self.dir / inst.file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StateError(f"active bundle {path} unreadable: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != inst.file_sha256:
            raise StateError(f"active bundle {path} does not match its recorded hash")
        return data

    def load_active(self, ctx: VerificationContext, now: datetime) -> VerifiedBundle | None:
        """Re-verify the active bundle at start-up (trust or model may have changed)."""
        data = self.active_bytes()
        if data is None:
            return None
        return ctx.verify_bundle(data, now, self.state())

    def install(self, data: bytes, ctx: VerificationContext, now: datetime) -> VerifiedBundle:
        """Verify ``data`` against the recorded state and make it the active bundle."""
        self.dir.mkdir(parents=True, exist_ok=True)
        before = self.installed()
        verified = ctx.verify_bundle(data, now, before.record if before else None)
        if before and verified.content_sha256 == before.record.content_sha256:
            if before.file == PURGED:
                raise StateError(f"bundle {before.record.bundle_id} v{before.record.version} was purged "
                                 "when its deployment ended; a new version must be issued")
            return verified  # already active: nothing to write
        file_sha = hashlib.sha256(data).hexdigest()
        name = f"bundle-{file_sha}.bin"
        try:
            self._write(name, data, file_sha, verified)
        except OSError as exc:  # e.g. ENOSPC: the old state.json still names the old bundle
            raise StateError(f"cannot install bundle in {self.dir}: {exc}") from exc
        return verified

    def _write(self, name: str, data: bytes, file_sha: str, verified: VerifiedBundle) -> None:
        self._stage(name, data, file_sha)
        h = verified.header
        state = {
            "version": h.version,
            "issued_at": canonical.format_time(h.issued_at),
            "content_sha256": verified.content_sha256,
            "bundle_id": h.bundle_id,
            "file": name,
            "file_sha256": file_sha,
        }
        atomic_write(self.dir / STATE_FILE, json.dumps(state, indent=1).encode())  # the swap
        self._collect(keep=name)

    def _stage(self, name: str, data: bytes, file_sha: str) -> None:
        """Write the new bundle beside the old one and read it back before it can be named."""
        fd, staging = create_new(self.dir, "staging")
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if hashlib.sha256(staging.read_bytes()).hexdigest() != file_sha:
            staging.unlink(missing_ok=True)
            raise StateError("staged bundle does not read back as written; disk fault?")
        os.replace(staging, self.dir / name)
        fsync_dir(self.dir)

    def _collect(self, keep: str) -> None:
        """Remove superseded bundle files and leftovers of interrupted installs."""
        for p in self.dir.iterdir():
            stale_bundle = p.name.startswith("bundle-") and p.name != keep
            if stale_bundle or p.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    p.unlink()
        fsync_dir(self.dir)


PURGED = "purged"


def _purged_state(inst: Installed) -> dict[str, object]:
    r = inst.record
    return {"version": r.version, "issued_at": canonical.format_time(r.issued_at),
            "content_sha256": r.content_sha256, "bundle_id": r.bundle_id,
            "file": PURGED, "file_sha256": PURGED}


def purge_bundle(store: BundleStore) -> bool:
    """Delete the encrypted bundle file; keep the version record (rollback protection).

    Returns True if a file was deleted. The state is rewritten first, so a power
    cut between the two steps leaves an orphan file that the next install removes,
    never a state that names a missing file.
    """
    inst = store.installed()
    if inst is None or inst.file == PURGED:
        return False
    path = store.dir / inst.file
    try:
        atomic_write(store.dir / STATE_FILE, json.dumps(_purged_state(inst), indent=1).encode())
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(store.dir)
    except OSError as exc:
        raise StateError(f"cannot purge bundle {path}: {exc}") from exc
    return True


@dataclass(frozen=True)
class TrustRecord:
    version: int
    content_sha256: str


class TrustStore:
    """The trust root this device accepted, kept in state so that the trust file alone
    cannot take it back: an older version, a foreign self-signed root or another root of
    the same version is refused; a higher version only through :func:`trust.rotate`.

    Only the first root (provisioning, no state yet) is taken on its own signature.
    """

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)

    def _read(self) -> tuple[TrustRecord, bytes] | None:
        path = self.dir / TRUST_STATE_FILE
        raw = read_optional(path)
        if raw is None:
            return None
        try:
            f = canonical.Fields(canonical.loads_object(raw, "trust state"), "trust state")
            record = TrustRecord(f.integer("version", lo=1), f.text("content_sha256", max_len=64))
            document = base64.b64decode(f.text("document", max_len=2 * MAX_TRUST_HEADER), validate=True)
        except (MalformedError, binascii.Error) as exc:
            raise StateError(f"{path} is corrupt: {exc}") from exc
        return record, document

    def accepted(self) -> TrustRecord | None:
        """Version and content hash of the accepted root, or None before provisioning."""
        state = self._read()
        return None if state is None else state[0]

    def current(self) -> TrustRoot | None:
        """The accepted root, re-verified and checked against its recorded version and hash."""
        state = self._read()
        if state is None:
            return None
        record, document = state
        try:
            root = load_pinned(document)
        except SignedDocumentError as exc:
            raise StateError(f"the accepted trust root in {self.dir} no longer verifies: {exc}") from exc
        if (root.version, root.content_sha256) != (record.version, record.content_sha256):
            raise StateError(f"the accepted trust root in {self.dir} does not match its recorded"
                             f" version {record.version} and hash")
        return root

    def admit(self, data: bytes) -> TrustRoot:
        """The root the device is to use given trust file ``data``; typed refusal otherwise.

        State is written only when a new root is accepted, after it verified."""
        current = self.current()
        new = load_pinned(data) if current is None else rotate(current, data)
        if new is not current:
            state = {"version": new.version, "content_sha256": new.content_sha256,
                     "document": base64.b64encode(data).decode("ascii")}
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                atomic_write(self.dir / TRUST_STATE_FILE, json.dumps(state, indent=1).encode())
            except OSError as exc:
                raise StateError(f"cannot write {self.dir / TRUST_STATE_FILE}: {exc}") from exc
        return new
