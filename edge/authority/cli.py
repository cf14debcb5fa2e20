"""``edge keys|trust|bundle|order``: the central signing tools and device-side checks.

Outputs are files; summaries go to stdout as JSON. No command ever prints a
private key or a template.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge.accountability.governance import check_threshold
from edge.errors import ConfigError, EnrolmentError
from edge.perception.manifest import DEFAULT_EMBEDDER
from edge.watchlist import canonical, keys
from edge.watchlist.bundle import Caps, DeviceIdentity
from edge.watchlist.context import VerificationContext
from edge.watchlist.envelope import MAGIC, ORDER_TYPE, Envelope, decode

BIG = 1 << 30


def _now(args: argparse.Namespace) -> datetime:
    if getattr(args, "now", None):
        return canonical.Fields({"now": args.now}, "--now", ).time("now")
    return datetime.now(UTC)


def _print(obj: object) -> None:
    print(json.dumps(obj, indent=1, sort_keys=True, default=str))


def _sign_file(path: Path, key_paths: list[Path], out: Path | None) -> Envelope:
    env = decode(path.read_bytes(), max_header=BIG, max_body=BIG)
    for kp in key_paths:
        env = env.sign(keys.load_signer(kp))
    from edge.fsutil import atomic_write

    atomic_write(out or path, env.encode(), mode=0o644)
    return env


# --- keys ------------------------------------------------------------------------


def _keys_generate(args: argparse.Namespace) -> int:
    kind = keys.SIGNER if args.kind == "signer" else keys.DEVICE
    pub = keys.generate(kind, args.name or args.out.stem, args.out)
    _print(pub.to_json())
    return 0


def _keys_show(args: argparse.Namespace) -> int:
    for kind in (keys.SIGNER, keys.DEVICE):
        try:
            _print(keys.load_public(args.file, kind).to_json())
            return 0
        except ConfigError:
            continue
    raise ConfigError(str(args.file), "not a key file")


# --- trust -----------------------------------------------------------------------


def _role_spec(text: str) -> tuple[str, list[str], int]:
    """``ROLE=NAME[,NAME...][:THRESHOLD]``."""
    try:
        role, rest = text.split("=", 1)
        names, _, threshold = rest.partition(":")
        return role, names.split(","), int(threshold or 1)
    except ValueError as exc:
        raise ConfigError("--role", f"{text!r} is not ROLE=NAME[,NAME...][:THRESHOLD]") from exc


def _trust_doc(args: argparse.Namespace, version: int) -> Envelope:
    from edge.authority.build import trust_document

    pubs = [keys.load_public(p, keys.SIGNER) for p in args.key]
    roles = {r: (names, t) for r, names, t in map(_role_spec, args.role)}
    return trust_document(version, {p.name: p.public_key for p in pubs}, roles, _now(args))


def _trust_init(args: argparse.Namespace) -> int:
    from edge.fsutil import atomic_write
    from edge.watchlist.trust import parse_structure

    env = _trust_doc(args, 1)
    parse_structure(env.encode())  # validate before anyone signs it
    atomic_write(args.out, env.encode(), mode=0o644)
    print(f"trust v1 written to {args.out}; sign it with `edge trust sign`", file=sys.stderr)
    return 0


def _trust_rotate(args: argparse.Namespace) -> int:
    from edge.fsutil import atomic_write
    from edge.watchlist.trust import parse_structure

    current = parse_structure(args.current.read_bytes())
    env = _trust_doc(args, current.version + 1)
    parse_structure(env.encode())
    atomic_write(args.out, env.encode(), mode=0o644)
    print(f"trust v{current.version + 1} written to {args.out}; it needs signatures by "
          f"v{current.version}'s trust keys and by its own", file=sys.stderr)
    return 0


def _trust_sign(args: argparse.Namespace) -> int:
    env = _sign_file(args.file, args.key, args.out)
    print(f"{len(env.signatures)} signature(s)", file=sys.stderr)
    return 0


def _trust_verify(args: argparse.Namespace) -> int:
    from edge.watchlist.trust import load_pinned, rotate

    root = load_pinned(args.current.read_bytes())
    if args.new:
        root = rotate(root, args.new.read_bytes())
    _print({"version": root.version, "content_sha256": root.content_sha256,
            "roles": {r: {"threshold": v.threshold,
                          "keys": sorted(root.names[k] for k in v.keyids)}
                      for r, v in root.roles.items()}})
    return 0


# --- bundle ----------------------------------------------------------------------


def _recipients(specs: list[str]) -> dict[str, bytes]:
    out = {}
    for spec in specs:
        device, sep, path = spec.partition("=")
        if not sep:
            raise ConfigError("--device", f"{spec!r} is not DEVICE_ID=PUBLIC_KEY_FILE")
        out[device] = keys.load_public(Path(path), keys.DEVICE).public_key
    return out


def _bundle_build(args: argparse.Namespace) -> int:
    from edge.authority.build import build_bundle
    from edge.authority.enrol import build_entries, read_rows
    from edge.fsutil import atomic_write
    from edge.perception.analyzer import FaceAnalyzer
    from edge.perception.manifest import load_manifest
    from edge.watchlist.model import embedder_floor, embedder_ref, reliable_width

    now = _now(args)
    manifest = load_manifest(args.models_dir)
    check_threshold(args.threshold, embedder_floor(manifest, args.embedder), "--threshold")
    rows = read_rows(args.csv, now)
    analyzer = FaceAnalyzer.from_models_dir(args.models_dir, family=args.embedder)
    entries, rejected = build_entries(rows, args.images, analyzer, args.min_quality,
                                      reliable_width(manifest, args.embedder))
    for r in rejected:
        print(f"rejected {r.image} ({r.subject_ref}): {r.reason}", file=sys.stderr)
    if rejected and not args.skip_rejected:
        raise EnrolmentError(f"{len(rejected)} image(s) rejected; fix them or pass "
                             f"--skip-rejected")
    not_before = now
    env = build_bundle(
        bundle_id=args.bundle_id or f"{args.fleet}-v{args.version}",
        version=args.version, issued_at=now, not_before=not_before,
        expires_at=now + timedelta(days=args.valid_days), issuer=args.issuer,
        fleet_id=args.fleet, recipients=_recipients(args.device), model=embedder_ref(manifest, args.embedder),
        threshold=args.threshold, entries=entries,
        caps=Caps(max(1, len(entries)), 16, 64 * 1024 * 1024),
    )
    atomic_write(args.out, env.encode(), mode=0o644)
    _print({"out": str(args.out), "entries": len(entries),
            "templates": sum(int(e.templates.shape[0]) for e in entries),
            "rejected": len(rejected), "unsigned": True})
    return 0


def _bundle_sign(args: argparse.Namespace) -> int:
    env = _sign_file(args.file, args.key, args.out)
    _print({"signatures": [s.keyid.hex() for s in env.signatures],
            "content_sha256": env.content_sha256()})
    return 0


def _device_context(args: argparse.Namespace) -> VerificationContext:
    from edge.perception.manifest import load_manifest
    from edge.watchlist.context import load_context

    return load_context(trust_file=args.trust, device_key=args.device_key,
                        identity=DeviceIdentity(args.device_id, args.fleet),
                        manifest=load_manifest(args.models_dir), family=args.embedder)


def _summary(vb: Any) -> dict[str, object]:
    h = vb.header
    return {"bundle_id": h.bundle_id, "version": h.version, "issued_at": h.issued_at,
            "expires_at": h.expires_at, "entries": len(vb.entries),
            "templates": int(vb.templates.shape[0]), "threshold": h.threshold,
            "content_sha256": vb.content_sha256, "verified": True}


def _bundle_verify(args: argparse.Namespace) -> int:
    from edge.watchlist.state import BundleStore

    now = _now(args)
    last = BundleStore(args.state_dir).state() if args.state_dir else None
    vb = _device_context(args).verify_bundle(args.file.read_bytes(), now, last)
    _print(_summary(vb) | {"expired_entries": vb.expired_entries(now)})
    return 0


def _bundle_install(args: argparse.Namespace) -> int:
    from edge.watchlist.state import BundleStore

    vb = BundleStore(args.state_dir).install(args.file.read_bytes(), _device_context(args), _now(args))
    _print(_summary(vb) | {"installed": True})
    return 0


def _bundle_inspect(args: argparse.Namespace) -> int:
    from edge.watchlist.verify import inspect

    _print(inspect(args.file.read_bytes()))
    return 0


# --- order -----------------------------------------------------------------------


def _order_sign(args: argparse.Namespace) -> int:
    from edge.fsutil import atomic_write
    from edge.watchlist.order import parse_order

    raw = args.file.read_bytes()
    if raw.startswith(MAGIC):
        env = decode(raw, max_header=BIG, max_body=0)
    else:  # an order document in JSON: validate, canonicalise, then sign
        order = parse_order(raw)
        env = Envelope(ORDER_TYPE, canonical.dumps(order.to_json()), b"")
    for kp in args.key:
        env = env.sign(keys.load_signer(kp))
    atomic_write(args.out, env.encode(), mode=0o644)
    _print({"out": str(args.out), "signatures": [s.keyid.hex() for s in env.signatures]})
    return 0


def _sign_new(env: Envelope, args: argparse.Namespace) -> int:
    from edge.fsutil import atomic_write

    for kp in args.key:
        env = env.sign(keys.load_signer(kp))
    atomic_write(args.out, env.encode(), mode=0o644)
    _print({"out": str(args.out), "content_sha256": env.content_sha256(),
            "signatures": [s.keyid.hex() for s in env.signatures]})
    return 0


def _order_revoke(args: argparse.Namespace) -> int:
    from edge.watchlist.order import revocations_document

    return _sign_new(revocations_document(args.fleet, args.list_seq, _now(args), args.order_ids), args)


def _order_resume(args: argparse.Namespace) -> int:
    from edge.watchlist.order import resume_document

    return _sign_new(resume_document(args.device_id, args.order_id, args.resume_seq, _now(args),
                                     args.decided_by, args.reason), args)


def _order_verify(args: argparse.Namespace) -> int:
    from edge.watchlist.order import verify_order
    from edge.watchlist.trust import load_pinned

    order = verify_order(args.file.read_bytes(), load_pinned(args.trust.read_bytes()),
                         args.fleet)
    out: dict[str, object] = {"order": order.to_json(), "content_sha256": order.content_sha256}
    if args.device_id and args.camera_id:
        status = order.check(_now(args), args.device_id, args.camera_id)
        out["active"], out["reason"] = status.active, status.reason
        _print(out)
        return 0 if status.active else 3
    _print(out)
    return 0


# --- registration ----------------------------------------------------------------


def _embedder_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embedder", default=DEFAULT_EMBEDDER, metavar="FAMILY",
                   help=f"recogniser family in the manifest (default: {DEFAULT_EMBEDDER})")


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust", type=Path, required=True, help="pinned root-of-trust file")
    p.add_argument("--device-id", required=True)
    p.add_argument("--fleet", required=True)
    p.add_argument("--device-key", type=Path, required=True, help="X25519 device key file")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="default: $EDGE_MODELS_DIR, the checkout's models/, else the system's")
    _embedder_arg(p)
    p.add_argument("--now", help="RFC 3339 time instead of the clock (testing)")


def register(subparsers: Any) -> None:
    k = subparsers.add_parser("keys", help="generate and show signer and device keys")
    ks = k.add_subparsers(dest="action", required=True)
    p = ks.add_parser("generate", help="new Ed25519 signer or X25519 device key (0600)")
    p.add_argument("--kind", choices=("signer", "device"), required=True)
    p.add_argument("--name")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_keys_generate)
    p = ks.add_parser("show", help="print the public half of a key file")
    p.add_argument("file", type=Path)
    p.set_defaults(func=_keys_show)

    t = subparsers.add_parser("trust", help="root-of-trust files: init, rotate, sign, verify")
    ts = t.add_subparsers(dest="action", required=True)
    for name, func in (("init", _trust_init), ("rotate", _trust_rotate)):
        p = ts.add_parser(name, help=f"{name} an (unsigned) trust document")
        if name == "rotate":
            p.add_argument("--current", type=Path, required=True)
        p.add_argument("--key", type=Path, action="append", required=True,
                       help="signer public key file (repeat)")
        p.add_argument("--role", action="append", required=True,
                       help="ROLE=NAME[,NAME...][:THRESHOLD] for trust, watchlist, order "
                            "and the optional review (operators' keys)")
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--now")
        p.set_defaults(func=func)
    p = ts.add_parser("sign", help="add signatures to a trust file")
    p.add_argument("file", type=Path)
    p.add_argument("--key", type=Path, action="append", required=True)
    p.add_argument("--out", type=Path)
    p.set_defaults(func=_trust_sign)
    p = ts.add_parser("verify", help="check a pinned root, or a rotation from it")
    p.add_argument("--current", type=Path, required=True)
    p.add_argument("--new", type=Path)
    p.set_defaults(func=_trust_verify)

    b = subparsers.add_parser("bundle", help="watchlist bundles: build, sign, verify, inspect")
    bs = b.add_subparsers(dest="action", required=True)
    p = bs.add_parser("build", help="enrol images into an unsigned bundle")
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--csv", type=Path, required=True)
    p.add_argument("--models-dir", type=Path, default=None,
                   help="default: $EDGE_MODELS_DIR, the checkout's models/, else the system's")
    _embedder_arg(p)
    p.add_argument("--device", action="append", required=True,
                   help="DEVICE_ID=DEVICE_PUBLIC_KEY_FILE (repeat per target)")
    p.add_argument("--fleet", required=True)
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--bundle-id")
    p.add_argument("--threshold", type=float, required=True)
    p.add_argument("--valid-days", type=float, default=7.0)
    p.add_argument("--min-quality", type=float, default=0.5)
    p.add_argument("--skip-rejected", action="store_true",
                   help="write the bundle without the rejected images")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--now")
    p.set_defaults(func=_bundle_build)
    p = bs.add_parser("sign", help="add signatures")
    p.add_argument("file", type=Path)
    p.add_argument("--key", type=Path, action="append", required=True)
    p.add_argument("--out", type=Path)
    p.set_defaults(func=_bundle_sign)
    for name, func in (("verify", _bundle_verify), ("install", _bundle_install)):
        p = bs.add_parser(name, help=f"{name} as the device would")
        p.add_argument("file", type=Path)
        _device_args(p)
        p.add_argument("--state-dir", type=Path, required=name == "install")
        p.set_defaults(func=func)
    p = bs.add_parser("inspect", help="header, counts and signers; never templates")
    p.add_argument("file", type=Path)
    p.set_defaults(func=_bundle_inspect)

    o = subparsers.add_parser("order", help="deployment orders: sign, revoke, resume, verify")
    os_ = o.add_subparsers(dest="action", required=True)
    p = os_.add_parser("sign", help="sign an order (JSON document or envelope)")
    p.add_argument("file", type=Path)
    p.add_argument("--key", type=Path, action="append", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_order_sign)
    p = os_.add_parser("revoke", help="sign a revocation list: devices refuse the named orders")
    p.add_argument("order_ids", nargs="*", metavar="ORDER_ID")
    p.add_argument("--fleet", required=True)
    p.add_argument("--list-seq", type=int, required=True, help="higher than the last list issued")
    p.add_argument("--key", type=Path, action="append", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--now")
    p.set_defaults(func=_order_revoke)
    p = os_.add_parser("resume", help="sign a resume: lifts a false-alert suspension of one order on one"
                                     " device (the only way to lift one)")
    p.add_argument("--device-id", required=True)
    p.add_argument("--order-id", required=True)
    p.add_argument("--resume-seq", type=int, required=True, help="higher than the last resume for the device")
    p.add_argument("--decided-by", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--key", type=Path, action="append", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--now")
    p.set_defaults(func=_order_resume)
    p = os_.add_parser("verify", help="verify; with --device-id/--camera-id also the window")
    p.add_argument("file", type=Path)
    p.add_argument("--trust", type=Path, required=True)
    p.add_argument("--fleet", required=True)
    p.add_argument("--device-id")
    p.add_argument("--camera-id")
    p.add_argument("--now")
    p.set_defaults(func=_order_verify)
