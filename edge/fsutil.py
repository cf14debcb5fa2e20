"""Durable file writes, the one implementation every module uses.

``atomic_write``: temp file in the same folder, fsync, ``os.replace``, fsync of
the folder, so a reader (or a power cut) sees the old or the new file, never a
torn one.

Temporary and staging files get unpredictable names and are created with
``O_EXCL | O_NOFOLLOW`` (``create_new``): a symlink planted in a state folder is
never followed, so a writer running as the service user cannot be turned into a
write to some other file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from edge.errors import StateError

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def create_new(directory: Path, stem: str, mode: int = 0o600) -> tuple[int, Path]:
    """A new file with a random name in ``directory``: (fd, path). Never follows or reuses a path."""
    path = directory / f".{stem}.{secrets.token_hex(8)}.tmp"
    return os.open(path, _NEW, mode), path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably (file mode ``mode``)."""
    fd, tmp = create_new(path.parent, path.name, mode)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def free_bytes(path: Path) -> int | None:
    """Free space for an unprivileged writer on ``path``'s filesystem (None if unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def read_optional(path: Path) -> bytes | None:
    """A state file's bytes, None when it does not exist yet; any other failure is a ``StateError``."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc}") from exc
