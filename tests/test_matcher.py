"""Matcher: top-1 subject over several templates, margin to the next subject, expiry."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from edge.pipeline.matcher import Matcher
from edge.watchlist.verify import verify_bundle
from tests.watchlist_world import FLOOR, MODEL, World, entry, random_templates


def _matcher(w: World, specs: list, delta: timedelta = timedelta()) -> Matcher:  # type: ignore[type-arg]
    data = w.unsigned(entries=specs).sign(w.watch).encode()
    now = w.now() + delta
    vb = verify_bundle(data, w.trust(), w.device, now, expected_model=MODEL,
                       threshold_floor=FLOOR, last=None, device_key=w.dkey)
    return Matcher.from_bundle(vb, now)


def test_agrees_with_brute_force() -> None:
    w = World()
    rng = np.random.default_rng(3)
    specs = [entry(rng, i, n_templates=int(rng.integers(1, 4))) for i in range(40)]
    m = _matcher(w, specs)
    queries = random_templates(rng, 25)
    queries[:5] = specs[7].templates[0]  # exact hits on a known subject
    for q, got in zip(queries, m.match_many(queries), strict=True):
        per_subject = sorted(((float(np.max(s.templates @ q)), s.subject_ref) for s in specs),
                             reverse=True)
        assert got is not None
        assert got.entry.subject_ref == per_subject[0][1]
        assert np.isclose(got.score, per_subject[0][0], atol=1e-5)
        assert np.isclose(got.margin, per_subject[0][0] - per_subject[1][0], atol=1e-5)
    hit = m.match(queries[0])
    assert hit is not None and hit.entry.subject_ref == specs[7].subject_ref
    assert hit.matched and np.isclose(hit.score, 1.0, atol=1e-5)


def test_margin_is_to_the_next_subject_not_the_next_template() -> None:
    w = World()
    rng = np.random.default_rng(4)
    base = random_templates(rng, 1)[0]
    twin = base + 0.01 * rng.standard_normal(128).astype(np.float32)
    twin /= np.linalg.norm(twin)
    a = entry(rng, 0, templates=np.stack([base, twin]))  # two near-identical templates
    b = entry(rng, 1)
    m = _matcher(w, [a, b])
    got = m.match(base)
    assert got is not None and got.entry.subject_ref == a.subject_ref
    assert got.second_score == float(np.max(b.templates @ base).astype(np.float32)) or np.isclose(
        got.second_score, float(np.max(b.templates @ base)), atol=1e-5)
    assert got.margin > 0.3  # not the ~0 gap to its own second template


def test_expired_entries_are_skipped_and_counted() -> None:
    w = World()
    rng = np.random.default_rng(5)
    specs = [entry(rng, i) for i in range(5)]
    specs[2] = entry(rng, 2, expires_at=w.now() + timedelta(hours=1))
    specs[4] = entry(rng, 4, expires_at=w.now() + timedelta(hours=2))
    assert _matcher(w, specs).skipped_expired == 0
    later = _matcher(w, specs, timedelta(hours=1, minutes=30))
    assert later.skipped_expired == 1 and len(later) == 4
    got = later.match(specs[2].templates[0])
    assert got is not None and got.entry.subject_ref != specs[2].subject_ref
    hit = later.match(specs[3].templates[1])
    assert hit is not None and hit.entry.subject_ref == specs[3].subject_ref
    gone = _matcher(w, [specs[2]], timedelta(hours=1, minutes=30))
    assert len(gone) == 0 and gone.match(specs[3].templates[0]) is None


def test_single_subject_has_no_second() -> None:
    w = World()
    rng = np.random.default_rng(6)
    spec = entry(rng, 0)
    got = _matcher(w, [spec]).match(spec.templates[1])
    assert got is not None and got.second_score == -1.0


def test_the_effective_threshold_is_fixed_where_the_matcher_is_built() -> None:
    """The config's matching.threshold may raise the bundle's, never lower it."""
    w = World()
    rng = np.random.default_rng(5)
    specs = [entry(rng, i) for i in range(3)]
    vb = w.ctx().verify_bundle(w.unsigned(entries=specs).sign(w.watch).encode(), w.now(), None)
    bundle_threshold = vb.header.threshold
    assert Matcher.from_bundle(vb, w.now()).threshold == bundle_threshold
    assert Matcher.from_bundle(vb, w.now(), bundle_threshold - 0.05).threshold == bundle_threshold
    raised = Matcher.from_bundle(vb, w.now(), min(0.999, bundle_threshold + 0.04))
    assert raised.threshold == min(0.999, bundle_threshold + 0.04)
    # A query scoring between the two thresholds matches under the bundle's, not the raised one.
    between = (bundle_threshold + raised.threshold) / 2
    other = random_templates(rng, 1)[0]
    other -= (other @ specs[0].templates[0]) * specs[0].templates[0]
    other /= np.linalg.norm(other)
    q = np.float32(between) * specs[0].templates[0] + np.float32(np.sqrt(1 - between**2)) * other
    plain, strict = Matcher.from_bundle(vb, w.now()).match(q), raised.match(q)
    assert plain is not None and strict is not None
    assert plain.matched and not strict.matched
