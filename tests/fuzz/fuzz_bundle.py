"""atheris fuzz target for the bundle verifier (``make fuzz``).

Two modes, chosen by the first input byte: the raw bytes are handed to the
verifier (the framing and signature layer), or they are split into a header
and a body that are signed with the trusted key first, so the JSON, entry and
decryption code behind the signature is reached too. Anything but a
``SignedDocumentError`` escaping is a crash.

    python tests/fuzz/fuzz_bundle.py CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import nacl.public
    import nacl.signing
    import numpy as np

    from edge.authority.build import EntrySpec, build_bundle, normalise, trust_document
    from edge.errors import SignedDocumentError
    from edge.watchlist.bundle import DeviceIdentity, ModelRef
    from edge.watchlist.envelope import BUNDLE_TYPE, Envelope
    from edge.watchlist.trust import load_pinned
    from edge.watchlist.verify import verify_bundle

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ROOT = nacl.signing.SigningKey(b"\x01" * 32)
WATCH = nacl.signing.SigningKey(b"\x02" * 32)
DKEY = nacl.public.PrivateKey(b"\x03" * 32)
DEVICE = DeviceIdentity("cam-north", "boulevard")
MODEL = ModelRef("dlib_resnet_v1", "ab" * 32, 128)
TRUST = load_pinned(trust_document(
    1, {"root": bytes(ROOT.verify_key), "watch": bytes(WATCH.verify_key)},
    {"trust": (["root"], 1), "watchlist": (["watch"], 1), "order": (["root"], 1)}, T0,
).sign(ROOT).encode())
NOW = T0 + timedelta(hours=1)


def seed() -> Envelope:
    rng = np.random.default_rng(0)
    entries = [EntrySpec(f"s{i}", "wanted", f"w/{i}", "custody", date(2025, 1, 1), T0,
                         T0 + timedelta(days=9), normalise(rng.standard_normal((2, 128))))
               for i in range(2)]
    return build_bundle(
        bundle_id="b", version=1, issued_at=T0, not_before=T0,
        expires_at=T0 + timedelta(days=30), issuer="i", fleet_id="boulevard",
        recipients={"cam-north": bytes(DKEY.public_key)}, model=MODEL, threshold=0.95,
        entries=entries,
    )


def verify(data: bytes) -> None:
    with contextlib.suppress(SignedDocumentError):
        verify_bundle(data, TRUST, DEVICE, NOW, expected_model=MODEL, threshold_floor=0.8,
                      last=None, device_key=DKEY)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1 == 0:
        verify(data[1:])
        return
    fdp = atheris.FuzzedDataProvider(data[1:])
    header = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096))
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    verify(Envelope(BUNDLE_TYPE, header, body).sign(WATCH).encode())


def main() -> None:
    corpus = next((Path(a) for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus is not None and corpus.is_dir() and not any(corpus.iterdir()):
        env = seed()
        (corpus / "raw").write_bytes(b"\x00" + env.sign(WATCH).encode())
        hlen = len(env.header)
        (corpus / "resign").write_bytes(
            b"\x01" + hlen.to_bytes(2, "little") + env.header + env.body)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
