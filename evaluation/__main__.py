"""``python -m evaluation``: measure every configuration, write the model card, print the summary."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge.fsutil import atomic_write
from edge.perception.manifest import load_manifest
from evaluation import card as cardmod
from evaluation import metrics as mt
from evaluation.configs import TRAINING_DATA, Recogniser, available
from evaluation.data import DATA_ENV, DATASET_NAME, ROOT, default_data_dir, load_dataset
from evaluation.degrade import BY_NAME, CONDITIONS
from evaluation.extract import detect_all
from evaluation.run import Curves, Settings, embed_all, measure_variant, reliable_width

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
    ap.add_argument("--no-manifest", action="store_true", help="do not write models/manifest.json")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    t0 = time.monotonic()
    conds = tuple(CONDITIONS if not args.conditions
                  else [BY_NAME["clean"], *(BY_NAME[c] for c in args.conditions if c != "clean")])
    s = Settings(condition_probes=args.condition_probes, bootstrap=args.bootstrap, conditions=conds)
    ds = load_dataset(args.data or default_data_dir())
    manifest = load_manifest(args.models_dir)
    recs = sorted(available(manifest, args.configs), key=lambda r: not r.today)
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
        "command": "make eval", "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "detector": {"model_id": dets.detector_id, "sha256": dets.detector_sha},
        "no_face": int((~dets.found).sum()), "several_faces": int((dets.faces_found > 1).sum()),
        "bootstrap": s.bootstrap, "repeats": s.repeats, "condition_probes": int(subset.shape[0]),
        "reliable_rule_points": 0.05,
    }
    configs: list[dict[str, Any]] = []
    curves: dict[str, Curves] = {}
    reference_fmr: float | None = None
    for rec in recs:
        full, per_cond = embed_all(ds, dets, rec, args.models_dir, manifest, subset, s, args.cache)
        cfg = describe(rec, manifest)
        thr: float | None = shipped.get(rec.family) if rec.today else None
        for v in rec.variants(manifest):
            valid = dets.found & (np.abs(full[v]).sum(axis=1) > 0)
            if thr is None and reference_fmr is not None:
                thr = matched_threshold(full[v], valid, ds.person, reference_fmr)
            res, used = measure_variant(ds, rec, v, full[v], valid, per_cond[v], subset, thr, s)
            thr = used
            if rec.today and v == "float32":
                c = res.curves
                reference_fmr = int(np.count_nonzero(c.impostor_desc >= used)) / c.impostor_total
            entry = manifest.variant(rec.family, v)
            cfg["variants"][v] = {"model_id": entry.model_id, "file": entry.file, "sha256": entry.sha256,
                                  **res.body}
            curves[f"{rec.key} {v}"] = res.curves
            log.info("%s %s measured (%.0f s so far)", rec.key, v, time.monotonic() - t0)
        widths = {v: reliable_width(b["conditions"]) for v, b in cfg["variants"].items()}
        cfg["reliable_width_by_variant"] = widths
        known = [w for w in widths.values() if w is not None]
        cfg["reliable_width_px"] = max(known) if len(known) == len(widths) else None
        configs.append(cfg)
    evaluated["run_seconds"] = time.monotonic() - t0
    result = {"evaluated": evaluated, "configs": configs}
    write_outputs(args, result, curves)
    evaluated["run_seconds"] = time.monotonic() - t0
    print()
    print(cardmod.summary_table(result))
    print()
    print("\n".join(cardmod.goals(result)))
    print(f"\nmake eval: {evaluated['run_seconds']:.0f} s; card in {args.out}")
    return 0


def shipped_threshold(models_dir: Path, recs: list[Recogniser]) -> dict[str, float]:
    """The match threshold each family's current card recommends (today's operating point)."""
    doc = json.loads((models_dir / "manifest.json").read_text("utf-8"))
    cards = doc.get(cardmod.CARDS_KEY, {})
    return {r.family: float(cards[r.family]["threshold"]) for r in recs
            if isinstance(cards.get(r.family), dict) and "threshold" in cards[r.family]}


def matched_threshold(emb: mt.F32, valid: np.ndarray, person: mt.I64, fmr: float) -> float:
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
                           "training_data": TRAINING_DATA.get(rec.family, "not recorded")},
            "variants": {}}


def write_outputs(args: argparse.Namespace, result: dict[str, Any], curves: dict[str, Curves]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    cardmod.det_plot(args.out / "det.png", curves)
    atomic_write(args.out / "card.json", (json.dumps(result, indent=1) + "\n").encode(), mode=0o644)
    atomic_write(args.out / "CARD.md", cardmod.markdown(result).encode(), mode=0o644)
    if not args.no_manifest:
        ev = result["evaluated"]
        cards = {c["family"]: cardmod.device_card(c, ev) for c in result["configs"] if c["device"]}
        cardmod.write_device_cards(args.models_dir, cards)


if __name__ == "__main__":
    raise SystemExit(main())
