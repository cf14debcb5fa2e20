"""Bundle load time: 10,000 entries x 2 templates verified, decrypted and loaded.

Times the whole device path (``verify_bundle`` then ``Matcher.from_bundle``)
and its stages, then the matcher's query latency. Keys and templates are
generated here (random unit vectors: the load cost does not depend on faces).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import nacl.public
import nacl.signing
import numpy as np

from edge.authority.build import EntrySpec, build_bundle, normalise, trust_document
from edge.pipeline.matcher import Matcher
from edge.watchlist.bundle import DeviceIdentity, ModelRef
from edge.watchlist.context import VerificationContext
from edge.watchlist.envelope import decode
from edge.watchlist.trust import load_pinned
from edge.watchlist.verify import decrypt_templates, parse_entries, parse_header

ENTRIES = 10_000
TEMPLATES = 2
REPEATS = 5


def _best(fn: Callable[[], object], repeats: int = REPEATS) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def run(args: argparse.Namespace) -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    rng = np.random.default_rng(0)
    root, watch = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    dkey = nacl.public.PrivateKey.generate()
    device = DeviceIdentity("cam-north", "boulevard")
    model = ModelRef("dlib_resnet_v1", "00" * 32, 128)
    trust = load_pinned(trust_document(
        1, {"root": bytes(root.verify_key), "watch": bytes(watch.verify_key)},
        {"trust": (["root"], 1), "watchlist": (["watch"], 1), "order": (["root"], 1)}, t0,
    ).sign(root).encode())
    templates = normalise(rng.standard_normal((ENTRIES * TEMPLATES, 128)))
    entries = [
        EntrySpec(f"subj-{i:06d}", "wanted", f"warrant/{i}", "custody", date(2025, 1, 1),
                  t0, t0 + timedelta(days=90), templates[i * TEMPLATES : (i + 1) * TEMPLATES])
        for i in range(ENTRIES)
    ]
    t = time.perf_counter()
    data = build_bundle(
        bundle_id="bench", version=1, issued_at=t0, not_before=t0,
        expires_at=t0 + timedelta(days=30), issuer="bench", fleet_id="boulevard",
        recipients={"cam-north": bytes(dkey.public_key)}, model=model, threshold=0.95,
        entries=entries,
    ).sign(watch).encode()
    build_s = time.perf_counter() - t
    now = t0 + timedelta(hours=1)

    ctx = VerificationContext(trust, device, model, threshold_floor=0.8, device_key=dkey)

    def load() -> Matcher:
        return Matcher.from_bundle(ctx.verify_bundle(data, now, None), now)

    matcher = load()
    best, median = _best(load)
    env = decode(data, max_header=1 << 20, max_body=1 << 30)
    header = parse_header(env)
    _, ciphertext = parse_entries(env, header)
    stages = {
        "decode framing": _best(lambda: decode(data, max_header=1 << 20, max_body=1 << 30)),
        "signature (Ed25519)": _best(lambda: trust.verify(env, "watchlist")),
        "parse entries": _best(lambda: parse_entries(env, header)),
        "decrypt templates": _best(lambda: decrypt_templates(header, ciphertext, device, dkey)),
    }
    print(f"bundle: {ENTRIES} entries x {TEMPLATES} templates, {len(data) / 1e6:.1f} MB, "
          f"built+signed in {build_s:.2f} s")
    print(f"{'verify+decrypt+load into matcher':36s} best {best * 1e3:7.1f} ms  "
          f"median {median * 1e3:7.1f} ms")
    for name, (b, m) in stages.items():
        print(f"  {name:34s} best {b * 1e3:7.1f} ms  median {m * 1e3:7.1f} ms")

    queries = normalise(rng.standard_normal((64, 128)))
    n = 200
    t = time.perf_counter()
    for i in range(n):
        matcher.match(queries[i % 64])
    one = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(20):
        matcher.match_many(queries[:8])
    batch = (time.perf_counter() - t) / 20
    print(f"{'matcher query, 1 face':36s} {one * 1e3:7.2f} ms over {len(matcher)} subjects "
          f"({matcher.templates.shape[0]} templates)")
    print(f"{'matcher query, batch of 8 faces':36s} {batch * 1e3:7.2f} ms")
