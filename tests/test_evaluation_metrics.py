"""The eval's metric functions on small score sets whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.perception.types import Detection
from evaluation import metrics as mt
from evaluation.extract import pick_face
from evaluation.run import reliable_width
from evaluation.scoring import NO_FACE, Side, WatchList, all_pairs, draw_lists, search


def desc(x: list[float] | np.ndarray) -> np.ndarray:
    return np.sort(np.asarray(x, np.float32))[::-1]


IMPOSTORS = desc(np.arange(1000) / 1000.0)  # 0.000 .. 0.999


def test_threshold_accepts_at_most_the_target_share_of_impostors() -> None:
    t = mt.threshold_at_rate(IMPOSTORS, 0.01)
    assert 0.989 < t <= 0.990
    assert mt.accept_rate(IMPOSTORS, t) == pytest.approx(0.01)
    # A target between two achievable rates rounds down to the lower one.
    assert mt.accept_rate(IMPOSTORS, mt.threshold_at_rate(IMPOSTORS, 0.0155)) == pytest.approx(0.015)
    assert mt.accept_rate(IMPOSTORS, mt.threshold_at_rate(IMPOSTORS, 1e-4)) == 0.0


def test_tar_at_fmr_known_answer() -> None:
    genuine = np.array([0.985, 0.99, 0.995, 0.5], np.float32)
    r = mt.tar_at_fmr(genuine, IMPOSTORS, 0.01, 1000)
    assert r.tar == 0.5 and r.false_matches == 10 and r.measurable
    r = mt.tar_at_fmr(genuine, IMPOSTORS, 0.02, 1000)  # threshold just above 0.979
    assert r.tar == 0.75 and r.false_matches == 20
    assert not mt.tar_at_fmr(genuine, IMPOSTORS, 1e-4, 1000).measurable


def test_wilson_interval_matches_the_formula() -> None:
    lo, hi = mt.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = mt.wilson(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    lo, hi = mt.wilson(990, 1000)
    assert lo < 0.99 < hi and hi - lo < 0.02
    assert all(math.isnan(v) for v in mt.wilson(0, 0))


def test_fnir_at_fpir_known_answer() -> None:
    s = mt.Searches(
        mated_top=np.array([0.96, 0.97, 0.5, 0.99], np.float32),
        mated_hit=np.array([True, False, True, True]),  # the 0.97 top candidate is someone else
        nonmated_top=np.arange(100, dtype=np.float32) / 100.0,
    )
    fnir, t, ok = mt.fnir_at_fpir(s, 0.05)  # accepts the 5 highest non-mated: 0.95 .. 0.99
    assert 0.94 < t <= 0.95 and ok
    assert mt.fpir_at(s, t) == pytest.approx(0.05)
    assert fnir == 0.5  # 0.97 is the wrong person, 0.5 is below the threshold
    assert mt.fnir_at(s, 0.0) == 0.25  # wrong-person top candidates are misses at any threshold
    assert not mt.supports_rate(1e-3, 2000) and mt.supports_rate(1e-3, 3000)


def _pairset(rng: np.random.Generator, people: int, per: int, sep: float, keep: float = 0.0
             ) -> mt.PairSet:
    d = 16
    centres = rng.normal(size=(people, d))
    emb = np.repeat(centres, per, axis=0) * sep + rng.normal(size=(people * per, d))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    person = np.repeat(np.arange(people), per).astype(np.int64)
    side = Side(emb, np.arange(people * per, dtype=np.int64), person, np.ones(people * per, bool))
    pairs, _ = all_pairs(side, side, people, symmetric=True, tail=10_000, keep=keep)
    return pairs


def test_all_pairs_counts_each_pair_once_and_no_face_never_matches() -> None:
    emb = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2]]
    emb[4] = 0.0  # image 4: no face
    person = np.array([0, 0, 1, 1, 2], np.int64)
    valid = np.array([True, True, True, True, False])
    side = Side(emb, np.arange(5, dtype=np.int64), person, valid)
    pairs, top = all_pairs(side, side, 3, symmetric=True, tail=100)
    assert pairs.genuine_pairs == 2 and sorted(pairs.genuine.tolist()) == [1.0, 1.0]
    assert pairs.impostor_pairs == 8  # C(5,2) - 2
    assert pairs.impostor_desc.max() == 0.0 and (pairs.impostor_desc == NO_FACE).sum() == 4
    assert len(top) == 8 and top[0][0] == 0.0
    # Closed-form impostor weight with every person counted once = the number of impostor pairs.
    one = np.ones(3)
    assert mt.impostor_weight(one, pairs.probe_count, pairs.ref_count, True) == 8


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_people() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for people in (60, 600):
        pairs = _pairset(rng, people, 3, 0.9)
        point = mt.tar_at_fmr(pairs.genuine, pairs.impostor_desc, 1e-3, pairs.impostor_total).tar
        (lo, hi), = mt.bootstrap_tar_at_fmr(pairs, [1e-3], 200, seed=2)
        assert lo <= point <= hi
        widths.append(hi - lo)
    assert 0 < widths[1] < widths[0]
    # Perfectly separated scores: every replicate accepts every genuine pair.
    pairs = _pairset(rng, 50, 2, 50.0)
    assert mt.bootstrap_tar_at_fmr(pairs, [1e-3], 50, seed=3) == [(1.0, 1.0)]


def test_search_splits_mated_and_non_mated() -> None:
    emb = np.eye(3, dtype=np.float32)[[0, 0, 1, 1, 2]]
    person = np.array([0, 0, 1, 1, 2], np.int64)
    side = Side(emb, np.arange(5, dtype=np.int64), person, np.ones(5, bool))
    s = search(WatchList(np.array([0, 2], np.int64), np.array([0, 4], np.int64)), side, side)
    assert s.mated_top.tolist() == [1.0] and s.mated_hit.tolist() == [True]  # image 1 finds person 0
    assert s.nonmated_top.tolist() == [0.0, 0.0]  # person 1's photos match nobody listed
    lists = draw_lists(person, 3, 2, 5, seed=0)
    assert len(lists) == 5 and all(len(set(wl.people.tolist())) == 2 for wl in lists)
    assert all(person[wl.enrol_image].tolist() == wl.people.tolist() for wl in lists)


def test_pick_face_is_the_largest_then_the_most_central() -> None:
    kp = np.zeros((6, 2), np.float32)
    small = Detection((100, 100, 140, 140), kp, 0.99)
    big_corner = Detection((0, 0, 60, 60), kp, 0.6)
    big_centre = Detection((95, 95, 155, 155), kp, 0.7)
    assert pick_face([small, big_corner], 250, 250) is big_corner
    assert pick_face([big_corner, big_centre, small], 250, 250) is big_centre
    assert pick_face([], 250, 250) is None


def test_reliable_width_is_the_smallest_within_five_points_of_full_size() -> None:
    def cond(name: str, kind: str, tar: float) -> dict[str, object]:
        return {"condition": name, "kind": kind,
                "verification": {"tar_at_fmr": [{"fmr": 1e-4, "tar": tar}]}}
    conds = [cond("clean", "clean", 0.80), cond("width112", "width", 0.80), cond("width64", "width", 0.78),
             cond("width48", "width", 0.74), cond("width32", "width", 0.77), cond("width24", "width", 0.5)]
    assert reliable_width(conds) == 64  # 48 is 6 points down; 32 recovering does not count


def test_rates_from_the_kept_top_scores_equal_those_from_all_scores() -> None:
    rng = np.random.default_rng(5)
    pairs_all = _pairset(rng, 200, 3, 0.8, keep=1.0)
    scores = pairs_all.impostor_desc
    n = pairs_all.impostor_total
    assert scores.shape[0] == n == 200 * 199 // 2 * 9
    top = _pairset(np.random.default_rng(5), 200, 3, 0.8, keep=0.1).impostor_desc
    assert top.shape[0] == n // 10 + 1
    np.testing.assert_array_equal(top, scores[: top.shape[0]])
    for f in (1e-2, 1e-3, 1e-4):
        assert mt.threshold_at_rate(top, f, n) == mt.threshold_at_rate(scores, f)
    with pytest.raises(ValueError, match="only"):
        mt.threshold_at_rate(top, 0.5, n)


def test_fused_embeddings_score_the_sum_of_scale_normalised_scores() -> None:
    from evaluation.scoring import fuse, impostor_spread

    rng = np.random.default_rng(6)
    a = rng.normal(size=(50, 8)).astype(np.float32)
    b = rng.normal(size=(50, 4)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    person = np.arange(50, dtype=np.int64)
    sa = impostor_spread(a, np.ones(50, bool), person, seed=0, pairs=5000)
    assert sa == pytest.approx(float(np.std((a @ a.T)[np.triu_indices(50, 1)])), rel=0.1)
    f = fuse(a, b, 0.5, 0.25)
    np.testing.assert_allclose(f @ f.T, (a @ a.T) / 0.5 + (b @ b.T) / 0.25, rtol=1e-5, atol=1e-5)


def test_several_templates_per_person_find_a_face_one_template_misses() -> None:
    # Person 0: photos 0 (frontal), 1 (profile) and 2 (profile again); person 1: photo 3.
    emb = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    person = np.array([0, 0, 0, 1], np.int64)
    side = Side(emb, np.arange(4, dtype=np.int64), person, np.ones(4, bool))
    one = WatchList(np.array([0], np.int64), np.array([0], np.int64))
    several = one.with_templates(person, 2, seed=0)
    assert several.templates[0] == 0 and several.templates.shape[0] == 2
    assert several.owner.tolist() == [0, 0]
    # Compared on the same searches (the photos not enrolled in either list):
    s1 = search(one, side, side, exclude=several.templates)
    s2 = search(several, side, side, exclude=several.templates)
    assert s1.mated_top.shape == s2.mated_top.shape == (1,)
    assert s1.mated_top[0] == 0.0 and s2.mated_top[0] == 1.0 and bool(s2.mated_hit[0])
    np.testing.assert_array_equal(s1.nonmated_top, [0.0])
