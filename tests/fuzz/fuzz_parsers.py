"""atheris fuzz target for the message parsers besides the bundle (``make fuzz``):
reviews (``<prefix>/review``), deployment orders, order revocation lists and resumes.

The first input byte chooses the parser and the mode: raw bytes, or (for the signed
documents) bytes used as the header of an envelope signed with the trusted order key,
so the JSON and field code behind the signature is reached too. Anything but an
``EdgeError`` escaping is a crash; an accepted review must also be writable to the
audit log (its time representable in UTC).

    python tests/fuzz/fuzz_parsers.py CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import nacl.signing

    from edge.accountability.adjudication import Review, parse_review
    from edge.audit.chain import iso_ts
    from edge.authority.build import trust_document
    from edge.errors import EdgeError
    from edge.watchlist.envelope import ORDER_TYPE, RESUME_TYPE, REVOCATION_TYPE, Envelope
    from edge.watchlist.order import (
        resume_document,
        revocations_document,
        verify_order,
        verify_resume,
        verify_revocations,
    )
    from edge.watchlist.trust import load_pinned

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ROOT = nacl.signing.SigningKey(b"\x01" * 32)
ORDER_KEY = nacl.signing.SigningKey(b"\x04" * 32)
TRUST = load_pinned(trust_document(
    1, {"root": bytes(ROOT.verify_key), "order": bytes(ORDER_KEY.verify_key)},
    {"trust": (["root"], 1), "watchlist": (["root"], 1), "order": (["order"], 1)}, T0,
).sign(ROOT).encode())
FLEET, DEVICE = "boulevard", "cam-north"
DOCS: tuple[tuple[str, Callable[[bytes], object]], ...] = (
    (ORDER_TYPE, lambda d: verify_order(d, TRUST, FLEET)),
    (RESUME_TYPE, lambda d: verify_resume(d, TRUST, DEVICE)),
    (REVOCATION_TYPE, lambda d: verify_revocations(d, TRUST, FLEET)),
)


def review(data: bytes) -> None:
    with contextlib.suppress(EdgeError):
        iso_ts(parse_review(data).decided_at)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    choice, rest = data[0] % 7, data[1:]
    if choice == 0:
        review(rest)
        return
    ptype, verify = DOCS[(choice - 1) % 3]
    payload = rest if choice <= 3 else Envelope(ptype, rest, b"").sign(ORDER_KEY).encode()
    with contextlib.suppress(EdgeError):
        verify(payload)


def main() -> None:
    corpus = next((Path(a) for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus is not None and corpus.is_dir() and not any(corpus.iterdir()):
        (corpus / "review").write_bytes(b"\x00" + Review("ev-1", "false_alert", "v1", T0).to_bytes())
        seeds = (resume_document(DEVICE, "DO-1", 1, T0, "inspector", "reviewed"),
                 revocations_document(FLEET, 1, T0, ["DO-1"]))
        for i, env in enumerate(seeds):
            (corpus / f"signed-{i}").write_bytes(bytes([5 + i]) + env.header)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
