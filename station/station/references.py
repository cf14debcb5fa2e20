"""What the station shows beside a crop: the watchlist entry as the authority signed it.

The station reads the signed bundles the authority issues (a folder of bundle
files) and keeps, per ``subject_ref``, the entry's category, authority
reference and expiry, never templates (they are sealed to the devices and the
station has no key for them). A bundle is used only when the station's copy of
the trust root verifies it for the ``watchlist`` role.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.watchlist.envelope import decode
from edge.watchlist.trust import parse_trust
from edge.watchlist.verify import inspect

log = logging.getLogger(__name__)
MAX_BUNDLE = 64 * 1024 * 1024


def load_references(folder: Path, trust_file: Path) -> dict[str, dict[str, Any]]:
    """subject_ref -> entry fields, from every verified bundle in ``folder`` (highest version wins)."""
    trust = parse_trust(trust_file.read_bytes())
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        data = path.read_bytes()
        try:
            trust.verify(decode(data, max_header=MAX_BUNDLE, max_body=MAX_BUNDLE), "watchlist")
            info = inspect(data)
        except EdgeError as exc:
            log.error("bundle %s not used for references: %s", path.name, exc)
            continue
        header: dict[str, Any] = info["header"]  # type: ignore[assignment]
        entries: list[dict[str, Any]] = info["entries"]  # type: ignore[assignment]
        for e in entries:
            ref = str(e.get("subject_ref"))
            if ref in out and out[ref]["bundle_version"] > header.get("version", 0):
                continue
            out[ref] = {"category": e.get("category"), "authority_ref": e.get("authority_ref"),
                        "expires_at": e.get("expires_at"), "bundle_id": header.get("bundle_id"),
                        "bundle_version": header.get("version", 0)}
    return out
