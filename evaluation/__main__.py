"""``python -m evaluation``: measure every configuration, write the model card, print the summary."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.fsutil import atomic_write
from edge.perception.manifest import load_manifest
from evaluation import card as cardmod
from evaluation import metrics as mt
from evaluation.configs import Recogniser, available, left_out, training_data
from evaluation.data import DATA_ENV, DATASET_NAME, ROOT, Dataset, default_data_dir, load_dataset
from evaluation.degrade import BY_NAME, CONDITIONS
from evaluation.extract import Detections, detect_all
from evaluation.run import Curves, Settings, embed_all, measure_variant, reliable_width
from evaluation.scoring import fuse, impostor_spread

F32 = mt.F32

log = logging.getLogger("evaluation")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__)
    ap.add_argument("--data", type=Path, default=None,
                    help=f"folder with lfw-dev/ and lfw-dev-pairs.csv "
                         f"(default ${DATA_ENV}, else ../shared/data beside the checkout)")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "model-card")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "eval")
    ap.add_argument("--configs", nargs="*", default=None, help="configuration keys or families (default all)")
    ap.add_argument("--conditions", nargs="*", default=None, help="capture conditions (default all)")
    ap.add_argument("--condition-probes", type=int, default=Settings.condition_probes)
    ap.add_argument("--bootstrap", type=int, default=Settings.bootstrap)
    ap.add_argument("--int8-all-conditions", action="store_true",
                    help="measure int8 under every condition, not only clean and the face widths "
                         "(adds about 10 minutes: int8 PRELU is slow on the CPU)")
    ap.add_argument("--extra", action="store_true",
                    help="also the landmark-alignment configurations (about doubles the run time)")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite CARD.md and the manifest's cards from the card.json in --out")
    ap.add_argument("--no-manifest", action="store_true", help="do not write models/manifest.json")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    t0 = time.monotonic()
    if args.render:
        result = json.loads((args.out / "card.json").read_text("utf-8"))
        write_texts(args, result)
        return 0
    conds = tuple(CONDITIONS if not args.conditions
                  else [BY_NAME["clean"], *(BY_NAME[c] for c in args.conditions if c != "clean")])
    kinds = tuple(sorted({c.kind for c in CONDITIONS})) if args.int8_all_conditions else Settings.int8_kinds
    s = Settings(condition_probes=args.condition_probes, bootstrap=args.bootstrap, conditions=conds,
                 int8_kinds=kinds)
    cache_before = cache_files(args.cache)
    ds = load_dataset(args.data or default_data_dir())
    manifest = load_manifest(args.models_dir)
    recs = available(manifest, args.configs, args.extra)
    if not recs:
        print("no configuration to measure", file=sys.stderr)
        return 2
    log.info("%d images of %d people; configurations: %s", ds.images, ds.people,
             ", ".join(r.key for r in recs))
    dets = detect_all(ds, args.models_dir, manifest, args.cache)
    rng = np.random.default_rng(s.seed)
    picked = rng.choice(ds.images, size=min(s.condition_probes, ds.images), replace=False)
    subset = np.sort(picked).astype(np.int64)
    shipped = shipped_threshold(args.models_dir, recs)
    evaluated: dict[str, Any] = {
        "dataset": DATASET_NAME, "images": ds.images, "people": ds.people,
        "people_with_two_or_more": int((ds.counts() >= 2).sum()),
        "command": "make eval" + command_args(args),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "detector": {"model_id": dets.detector_id, "sha256": dets.detector_sha},
        "no_face": int((~dets.found).sum()), "several_faces": int((dets.faces_found > 1).sum()),
        "bootstrap": s.bootstrap, "repeats": s.repeats, "condition_probes": int(subset.shape[0]),
        "reliable_rule_points": 0.05,
        "int8_conditions": [c.name for c in conds if s.measures("int8", c)],
        "left_out": left_out(manifest, args.configs),
    }
    sess = Session(ds, dets, subset, s, t0)
    embedded: dict[str, tuple[Recogniser, dict[str, F32], dict[str, dict[str, F32]]]] = {}
    for rec in recs:
        full, per_cond = embed_all(ds, dets, rec, args.models_dir, manifest, subset, s, args.cache)
        embedded[rec.key] = (rec, full, per_cond)
        files = {}
        for v in rec.variants(manifest):
            e = manifest.variant(rec.family, v)
            files[v] = {"model_id": e.model_id, "file": e.file, "sha256": e.sha256}
        sess.measure(describe(rec, manifest), files, full, per_cond,
                     shipped.get(rec.family) if rec.today else None, today=rec.today)
    fuse_best_two(sess, embedded)
    configs, curves = sess.configs, sess.curves
    evaluated["run_seconds"] = time.monotonic() - t0
    evaluated["fingerprint"] = fingerprint(evaluated, configs, s)
    evaluated["run_times"] = run_times(args.out, evaluated, cache_before, cache_files(args.cache))
    result = {"evaluated": evaluated, "configs": configs}
    write_outputs(args, result, curves)
    evaluated["run_seconds"] = time.monotonic() - t0
    print()
    print(cardmod.summary_table(result))
    print()
    print("\n".join(cardmod.goals(result)))
    print(f"\nmake eval: {evaluated['run_seconds']:.0f} s; card in {args.out}")
    return 0


class Session:
    """What every configuration is measured against, and what has been measured so far."""

    def __init__(self, ds: Dataset, dets: Detections, subset: mt.I64, s: Settings, t0: float) -> None:
        self.ds, self.dets, self.subset, self.s, self.t0 = ds, dets, subset, s, t0
        self.configs: list[dict[str, Any]] = []
        self.curves: dict[str, Curves] = {}
        self.reference_fmr: float | None = None  # today's all-pairs FMR at its shipped threshold

    def measure(self, cfg: dict[str, Any], files: dict[str, dict[str, str]], full: dict[str, F32],
                per_cond: dict[str, dict[str, F32]], thr: float | None, today: bool) -> None:
        """Measure each variant in ``files``; int8 at the float variant's threshold."""
        ds = self.ds
        for v, meta in files.items():
            valid = self.dets.found & (np.abs(full[v]).sum(axis=1) > 0)
            if thr is None and self.reference_fmr is not None:
                thr = matched_threshold(full[v], valid, ds.person, self.reference_fmr)
            res, used = measure_variant(ds, full[v], valid, per_cond[v], self.subset, thr, self.s)
            thr = used
            if today and v == "float32":
                c = res.curves
                self.reference_fmr = int(np.count_nonzero(c.impostor_desc >= used)) / c.impostor_total
            cfg["variants"][v] = {**meta, **res.body}
            self.curves[f"{cfg['key']} {v}"] = res.curves
            log.info("%s %s measured (%.0f s so far)", cfg["key"], v, time.monotonic() - self.t0)
        widths = {v: reliable_width(b["conditions"]) for v, b in cfg["variants"].items()}
        cfg["reliable_width_by_variant"] = widths
        known = [w for w in widths.values() if w is not None]
        cfg["reliable_width_px"] = max(known) if known and len(known) == len(widths) else None
        self.configs.append(cfg)


def fuse_best_two(sess: Session, embedded: dict[str, tuple[Recogniser, dict[str, F32],
                                                          dict[str, dict[str, F32]]]]) -> None:
    """Score-level fusion of the two families with the highest float TAR at FMR 1e-5 (each with
    the alignment the device runs for it)."""
    def tar5(cfg: dict[str, Any]) -> float:
        rows = cfg["variants"].get("float32", {}).get("verification", {}).get("tar_at_fmr", [])
        return next((float(r["tar"] or 0.0) for r in rows if r["fmr"] == 1e-5), 0.0)

    new = sorted((c for c in sess.configs if c["device"] and c["key"] in embedded), key=tar5, reverse=True)
    if len(new) < 2:
        return
    ka, kb = new[0]["key"], new[1]["key"]
    ra, fa, ca = embedded[ka]
    rb, fb, cb = embedded[kb]
    ds = sess.ds
    valid = sess.dets.found
    wa = impostor_spread(fa["float32"], valid, ds.person, sess.s.seed)
    wb = impostor_spread(fb["float32"], valid, ds.person, sess.s.seed)
    variants = [v for v in fa if v in fb]
    full = {v: fuse(fa[v], fb[v], wa, wb) for v in variants}
    per_cond = {v: {c: fuse(ca[v][c], cb[v][c], wa, wb) for c in ca[v]} for v in variants}
    files = {v: {"model_id": f"{new[0]['variants'][v]['model_id']}+{new[1]['variants'][v]['model_id']}",
                 "file": "", "sha256": ""} for v in variants}
    cfg = {"key": f"fusion:{ra.family}+{rb.family}", "family": f"{ra.family}+{rb.family}",
           "aligner": f"{ra.aligner}/{rb.aligner}",
           "label": f"score-level fusion of {ra.family} and {rb.family} (sum of cosines, each divided "
                    "by its cross-person score spread)",
           "today": False, "opt_in": ra.opt_in or rb.opt_in, "device": False,
           "provenance": {"source": {"fusion_of": [new[0]["provenance"], new[1]["provenance"]]},
                          "licence": "see each family", "training_data": "see each family"},
           "variants": {}}
    sess.measure(cfg, files, full, per_cond, None, today=False)


def command_args(args: argparse.Namespace) -> str:
    """The EVAL_ARGS that change what is measured, as the card records the command."""
    parts = ((["--extra"] if args.extra else []) + (["--configs", *args.configs] if args.configs else [])
             + (["--conditions", *args.conditions] if args.conditions else [])
             + ([f"--condition-probes {args.condition_probes}"]
                if args.condition_probes != Settings.condition_probes else [])
             + (["--int8-all-conditions"] if args.int8_all_conditions else []))
    return f" EVAL_ARGS='{' '.join(parts)}'" if parts else ""


def cache_files(cache: Path) -> set[str]:
    """The detection and embedding files in the cache folder."""
    return {p.name for p in cache.glob("*.np[yz]")} if cache.is_dir() else set()


def fingerprint(evaluated: dict[str, Any], configs: list[dict[str, Any]], s: Settings) -> str:
    """What decides the measured numbers: command, detector, each configuration's files, settings."""
    what = {"command": evaluated["command"], "detector": evaluated["detector"]["sha256"],
            "configs": [[c["key"], {v: b["sha256"] for v, b in c["variants"].items()}] for c in configs],
            "conditions": [c.name for c in s.conditions], "int8_kinds": list(s.int8_kinds),
            "probes": s.condition_probes, "bootstrap": s.bootstrap, "seed": s.seed}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def run_times(out: Path, evaluated: dict[str, Any], before: set[str], after: set[str]) -> dict[str, float]:
    """This run's time as "cold" (empty cache at start) or "cached" (nothing computed), beside
    the other kind's from the previous card.json when it measured the same thing (fingerprint)."""
    times: dict[str, float] = {}
    prev = out / "card.json"
    if prev.is_file():
        old = json.loads(prev.read_text("utf-8")).get("evaluated", {})
        if old.get("fingerprint") == evaluated["fingerprint"]:
            times.update(old.get("run_times", {}))
    kind = "cold" if not before else "cached" if after == before else None
    if kind is not None:
        times[kind] = round(float(evaluated["run_seconds"]), 1)
        times[f"{kind}_load_15min"] = round(os.getloadavg()[2], 1)
    return times


def shipped_threshold(models_dir: Path, recs: list[Recogniser]) -> dict[str, float]:
    """The match threshold each family's current card recommends (today's operating point)."""
    doc = json.loads((models_dir / "manifest.json").read_text("utf-8"))
    cards = doc.get(cardmod.CARDS_KEY, {})
    return {r.family: float(cards[r.family]["threshold"]) for r in recs
            if isinstance(cards.get(r.family), dict) and "threshold" in cards[r.family]}


def matched_threshold(emb: mt.F32, valid: npt.NDArray[np.bool_], person: mt.I64, fmr: float) -> float:
    """The threshold at which this embedding space has the all-pairs FMR ``fmr``."""
    from evaluation.scoring import Side, all_pairs

    side = Side(emb, np.arange(emb.shape[0], dtype=np.int64), person, valid)
    pairs, _ = all_pairs(side, side, int(person.max()) + 1, symmetric=True, tail=10, keep=fmr)
    return mt.threshold_at_rate(pairs.impostor_desc, fmr, pairs.impostor_total)


def describe(rec: Recogniser, manifest: Any) -> dict[str, Any]:
    fp = manifest.variant(rec.family, "float32")
    return {"key": rec.key, "family": rec.family, "aligner": rec.aligner, "label": rec.label,
            "today": rec.today, "opt_in": rec.opt_in, "device": rec.device,
            "provenance": {"source": dict(fp.source), "licence": fp.licence,
                           "training_data": training_data(manifest, rec.family),
                           "provenance": dict(fp.extra.get("provenance", {}))},
            "variants": {}}


def write_outputs(args: argparse.Namespace, result: dict[str, Any], curves: dict[str, Curves]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    cardmod.det_plot(args.out / "det.png", curves)
    atomic_write(args.out / "card.json", (json.dumps(result, indent=1) + "\n").encode(), mode=0o644)
    write_texts(args, result)


def write_texts(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """CARD.md and the manifest's device-facing cards, both from the result tree."""
    atomic_write(args.out / "CARD.md", cardmod.markdown(result).encode(), mode=0o644)
    if not args.no_manifest:
        ev = result["evaluated"]
        cards = {c["family"]: cardmod.device_card(c, ev) for c in result["configs"] if c["device"]}
        cardmod.write_device_cards(args.models_dir, cards)


if __name__ == "__main__":
    raise SystemExit(main())
