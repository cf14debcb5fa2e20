"""The measurement: every configuration and variant, clean and degraded, into one result tree."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.perception.manifest import Manifest
from edge.perception.types import Embedder
from evaluation import metrics as mt
from evaluation.configs import Recogniser
from evaluation.data import Dataset
from evaluation.degrade import CONDITIONS, Condition
from evaluation.extract import Detections, embed_condition
from evaluation.scoring import Side, all_pairs, draw_lists, search

log = logging.getLogger("evaluation")

FMRS = (1e-3, 1e-4, 1e-5, 1e-6)
FPIRS = (1e-2, 1e-3, 1e-4)
LIST_SIZES = (100, 500, 1000)
CONDITION_LIST = 500
CURVE_TOP = 0.1  # the error curves start at FMR 10%: only the highest 10% of impostor scores are kept
TAIL = 200_000  # impostor pairs whose people the bootstrap tracks (covers FMR 1e-3 on 24M pairs)
RELIABLE_POINTS = 0.05  # a width is reliable if TAR@FMR1e-4 is within 5 points of the clean probes'


@dataclass(frozen=True)
class Settings:
    # Probe photos degraded per condition: 1,000 (not 2,000) keeps a cold ``make eval`` of three
    # families under 20 minutes; each condition row still has 6.9M cross-person pairs (TAR at
    # FMR 1e-5 measurable) and its 500-list FNIR at FPIR 1% stays supported.
    condition_probes: int = 1000
    repeats: dict[int, int] = field(default_factory=lambda: {100: 20, 500: 10, 1000: 10})
    bootstrap: int = 200
    condition_bootstrap: int = 100
    seed: int = 20261201
    conditions: tuple[Condition, ...] = CONDITIONS
    # The condition kinds int8 variants are measured under: clean and the face widths (the reliable
    # width is taken over both variants), not the JPEG, blur and low-light copies. int8 PRELU has no
    # fast CPU kernel (mobilefacenet_expo int8: 13-27 ms a face against 4-8 float), and those
    # copies would take a cold ``make eval`` past 20 minutes.
    int8_kinds: tuple[str, ...] = ("clean", "width")

    def measures(self, variant: str, condition: Condition) -> bool:
        """Whether ``variant`` is measured under ``condition``."""
        return variant != "int8" or condition.kind in self.int8_kinds


@dataclass
class Curves:
    """Arrays kept for the DET plot (not written to JSON)."""

    genuine: mt.F32
    impostor_desc: mt.F32  # the highest impostor scores
    impostor_total: int
    list500: mt.Searches | None = None


def _r(x: float, nd: int = 5) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else round(float(x), nd)


def verification(pairs: mt.PairSet, replicates: int, seed: int) -> dict[str, Any]:
    cis = mt.bootstrap_tar_at_fmr(pairs, list(FMRS), replicates, seed)
    rows = []
    for f, ci in zip(FMRS, cis, strict=True):
        t = mt.tar_at_fmr(pairs.genuine, pairs.impostor_desc, f, pairs.impostor_total)
        rows.append({"fmr": f, "threshold": _r(t.threshold, 6), "tar": _r(t.tar),
                     "ci95": [_r(ci[0]), _r(ci[1])], "false_matches": t.false_matches,
                     "measurable": t.measurable})
    return {"genuine_pairs": pairs.genuine_pairs, "impostor_pairs": pairs.impostor_pairs,
            "tar_at_fmr": rows}


def pooled(searches: list[mt.Searches]) -> mt.Searches:
    return mt.Searches(
        mated_top=np.concatenate([s.mated_top for s in searches]),
        mated_hit=np.concatenate([s.mated_hit for s in searches]),
        nonmated_top=np.concatenate([s.nonmated_top for s in searches]),
    )


def one_to_many(searches: list[mt.Searches], size: int, distinct_nonmated: int,
                threshold: float) -> dict[str, Any]:
    """FNIR at each FPIR on the searches of all lists pooled; FPIR at a fixed threshold."""
    p = pooled(searches)
    n_m, n_nm = p.mated_top.shape[0], p.nonmated_top.shape[0]
    at = []
    for f in FPIRS:
        fnir, t, _ = mt.fnir_at_fpir(p, f)
        missed = round(fnir * n_m)
        per_list = [mt.fnir_at(s, t) for s in searches]
        lo, hi = mt.wilson(missed, n_m)
        at.append({"fpir": f, "threshold": _r(t, 6), "fnir": _r(fnir), "ci95": [_r(lo), _r(hi)],
                   "range_over_lists": [_r(v) for v in mt.percentile_interval(per_list)],
                   "supported": mt.supports_rate(f, distinct_nonmated)})
    fp = int(np.count_nonzero(p.nonmated_top >= threshold))
    lo, hi = mt.wilson(fp, n_nm)
    fnir_t = mt.fnir_at(p, threshold)
    fn = round(fnir_t * n_m)
    flo, fhi = mt.wilson(fn, n_m)
    return {
        "list_size": size, "lists": len(searches),
        "mated_searches": round(n_m / len(searches)), "non_mated_searches": round(n_nm / len(searches)),
        "distinct_non_mated_images": distinct_nonmated,
        "at_fpir": at,
        "at_threshold": {"threshold": _r(threshold, 6), "fpir": _r(fp / n_nm if n_nm else math.nan),
                         "fpir_ci95": [_r(lo), _r(hi)], "fnir": _r(fnir_t),
                         "fnir_ci95": [_r(flo), _r(fhi)]},
        "curve": identification_curve(p),
    }


def identification_curve(p: mt.Searches, points: int = 30) -> list[list[float | None]]:
    """[threshold, fpir, fnir], ascending threshold, FPIR log-spaced from 0.5 down to one search."""
    desc = np.sort(p.nonmated_top)[::-1]
    n = desc.shape[0]
    rows: dict[float, list[float | None]] = {}
    for f in mt.log_rates(0.5, 1.0 / n, points):
        t = mt.threshold_at_rate(desc, f)
        rows[t] = [_r(t, 6), _r(mt.fpir_at(p, t), 7), _r(mt.fnir_at(p, t))]
    return [rows[t] for t in sorted(rows)]


TEMPLATES = 3


def multi_template(ds: Dataset, side: Side, threshold: float, s: Settings) -> dict[str, Any]:
    """500-person lists enrolled from up to three photos per person against one, on the same searches."""
    size = CONDITION_LIST
    lists = draw_lists(ds.person, ds.people, size, s.repeats[size], s.seed + size)
    multi = [wl.with_templates(ds.person, TEMPLATES, s.seed + k) for k, wl in enumerate(lists)]
    out: dict[str, Any] = {"list_size": CONDITION_LIST, "templates_per_person": TEMPLATES}
    counts = ds.counts()
    distinct = int(ds.images - np.mean([counts[wl.people].sum() for wl in lists]))
    for name, wls in (("one_photo", lists), ("several_photos", multi)):
        res = [search(wl, side, side, exclude=m.templates) for wl, m in zip(wls, multi, strict=True)]
        om = one_to_many(res, CONDITION_LIST, distinct, threshold)
        om.pop("curve")
        out[name] = om
    return out


def standard_pairs(ds: Dataset, emb: mt.F32, valid: npt.NDArray[np.bool_], threshold: float
                   ) -> dict[str, Any]:
    if not ds.pairs:
        return {}
    a = np.array([p[0] for p in ds.pairs])
    b = np.array([p[1] for p in ds.pairs])
    same = np.array([p[2] for p in ds.pairs])
    s = np.einsum("ij,ij->i", emb[a], emb[b])
    s[~(valid[a] & valid[b])] = -2.0
    acc = (s >= threshold) == same
    # Best accuracy over all thresholds (an optimistic reference, as LFW papers quote).
    best = max(float(np.mean((s >= t) == same)) for t in np.unique(s))
    n_same, n_diff = int(same.sum()), int((~same).sum())
    sa = int(np.count_nonzero(s[same] >= threshold))
    dr = int(np.count_nonzero(s[~same] < threshold))
    return {"threshold": _r(threshold, 6), "same_pairs": n_same, "different_pairs": n_diff,
            "same_accepted": _r(sa / n_same), "same_accepted_ci95": [_r(v) for v in mt.wilson(sa, n_same)],
            "different_rejected": _r(dr / n_diff), "accuracy": _r(float(acc.mean())),
            "best_accuracy": _r(best)}


@dataclass
class VariantResult:
    body: dict[str, Any]
    curves: Curves


def measure_variant(
    ds: Dataset, full: mt.F32, valid: npt.NDArray[np.bool_],
    cond_emb: dict[str, mt.F32], subset: mt.I64, card_threshold: float | None, s: Settings,
) -> tuple[VariantResult, float]:
    """Everything for one (configuration, variant): its clean embeddings ``full`` and the subset's
    under each condition. Returns the result and the operating threshold used."""
    person = ds.person
    images = np.arange(ds.images, dtype=np.int64)
    side = Side(full, images, person, valid)
    pairs, top = all_pairs(side, side, ds.people, symmetric=True, tail=TAIL, keep=CURVE_TOP)
    ver = verification(pairs, s.bootstrap, s.seed)
    ver["top_impostors"] = [{"score": _r(sc, 4), "image_a": ds.files[a], "image_b": ds.files[b]}
                            for sc, a, b in top]
    ver["curve"] = [[_r(t, 6), _r(fm, 9), _r(fn)] for t, fm, fn in
                    mt.error_curve(pairs.genuine, pairs.impostor_desc, pairs.impostor_total, high=CURVE_TOP)]
    thr = card_threshold if card_threshold is not None else math.nan
    body: dict[str, Any] = {"verification": ver}
    curves = Curves(pairs.genuine, pairs.impostor_desc, pairs.impostor_total)
    # Identification, clean.
    counts = ds.counts()
    ident = []
    for size in LIST_SIZES:
        lists = draw_lists(person, ds.people, size, s.repeats[size], s.seed + size)
        res = [search(wl, side, side) for wl in lists]
        distinct = int(ds.images - np.mean([counts[wl.people].sum() for wl in lists]))
        ident.append(one_to_many(res, size, distinct, thr))
        if size == CONDITION_LIST:
            curves.list500 = pooled(res)
    body["one_to_many"] = ident
    body["multi_template"] = multi_template(ds, side, thr, s)
    body["standard_pairs"] = standard_pairs(ds, full, valid, thr)
    # Conditions: degraded probes (subset) against clean references and clean enrolment.
    conds = []
    sub_person = person[subset]
    for c in s.conditions:
        if c.name not in cond_emb:
            continue  # not measured for this variant (``Settings.int8_kinds``)
        has_face = valid[subset] & (np.abs(cond_emb[c.name]).sum(axis=1) > 0)
        probe = Side(cond_emb[c.name], subset, sub_person, has_face)
        cp, _ = all_pairs(probe, side, ds.people, symmetric=False, tail=TAIL)
        cv = verification(cp, s.condition_bootstrap, s.seed)
        lists = draw_lists(person, ds.people, CONDITION_LIST, s.repeats[CONDITION_LIST],
                           s.seed + CONDITION_LIST)
        res = [search(wl, side, probe) for wl in lists]
        listed_in_subset = [int(np.isin(sub_person, wl.people).sum()) for wl in lists]
        distinct = int(subset.shape[0] - np.mean(listed_in_subset))
        om = one_to_many(res, CONDITION_LIST, distinct, thr)
        om.pop("curve")
        conds.append({"condition": c.name, "kind": c.kind, "describe": c.describe,
                      "verification": cv, "one_to_many": om})
    body["conditions"] = conds
    return VariantResult(body, curves), thr


def reliable_width(conds: list[dict[str, Any]]) -> int | None:
    """Smallest tested width whose TAR@FMR1e-4 (and every larger one's) is within 5 points of clean."""
    def tar(c: dict[str, Any]) -> float:
        row = next(r for r in c["verification"]["tar_at_fmr"] if r["fmr"] == 1e-4)
        return float(row["tar"]) if row["tar"] is not None else math.nan
    clean = next(tar(c) for c in conds if c["condition"] == "clean")
    widths = sorted((int(c["condition"][5:]), tar(c)) for c in conds if c["kind"] == "width")
    best: int | None = None
    for w, t in reversed(widths):
        if not t >= clean - RELIABLE_POINTS:
            break
        best = w
    return best


def embed_all(ds: Dataset, dets: Detections, rec: Recogniser, models_dir: Path, manifest: Manifest,
              subset: mt.I64, s: Settings, cache: Path
              ) -> tuple[dict[str, mt.F32], dict[str, dict[str, mt.F32]]]:
    """Clean embeddings of every image, and per condition of the subset, for each variant."""
    variants = rec.variants(manifest)
    embedders: dict[str, tuple[Embedder, str]] = {}
    cut, key = None, ""
    for v in variants:
        e, cut, key = rec.open(models_dir, v)
        embedders[v] = (e, rec.model_sha(manifest, v))
    if cut is None:
        raise ValueError(f"{rec.key}: no variant among those the eval measures")
    from evaluation.degrade import BY_NAME

    allidx = np.arange(ds.images, dtype=np.int64)
    full = embed_condition(ds, dets, allidx, BY_NAME["clean"], key, cut, embedders, cache)
    per_cond: dict[str, dict[str, mt.F32]] = {v: {} for v in variants}
    for c in s.conditions:
        wanted = {v: e for v, e in embedders.items() if s.measures(v, c)}
        got = ({v: full[v][subset] for v in wanted} if c.name == "clean"
               else embed_condition(ds, dets, subset, c, key, cut, wanted, cache))
        for v, emb in got.items():
            per_cond[v][c.name] = emb
    return full, per_cond
