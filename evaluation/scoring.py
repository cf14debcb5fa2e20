"""Similarity scores at scale: every same-person and cross-person pair, and watchlist searches.

Embeddings are L2-normalised, so a score is a dot product (cosine). An
image in which no face was found has a zero embedding and scores
``NO_FACE`` against everything: it counts as a missed genuine pair and never
as a false match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from evaluation.metrics import I64, PairSet, Searches

F32 = npt.NDArray[np.float32]
NO_FACE = -2.0
CHUNK = 512


@dataclass(frozen=True)
class Side:
    """One side of a comparison: embeddings and, per row, the image and person it shows."""

    emb: F32
    image: I64
    person: I64
    valid: npt.NDArray[np.bool_]


def _chunk_scores(probe: Side, ref: Side, i0: int, i1: int, symmetric: bool
                  ) -> tuple[F32, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    s = probe.emb[i0:i1] @ ref.emb.T
    s[~probe.valid[i0:i1]] = NO_FACE
    s[:, ~ref.valid] = NO_FACE
    same = probe.person[i0:i1, None] == ref.person[None, :]
    if symmetric:
        keep = np.arange(i0, i1)[:, None] < np.arange(ref.emb.shape[0])[None, :]
    else:
        keep = probe.image[i0:i1, None] != ref.image[None, :]
    return s.astype(np.float32), same & keep, ~same & keep


def all_pairs(probe: Side, ref: Side, people: int, symmetric: bool, tail: int, keep: float = 0.0
              ) -> tuple[PairSet, list[tuple[float, int, int]]]:
    """Every genuine and impostor pair between ``probe`` and ``ref``.

    ``symmetric``: probe and ref are the same set, each unordered pair once.
    Returns the pair set (the highest ``keep`` share of impostor scores, at
    least ``tail`` of them, sorted descending; the people of the top ``tail``)
    and the 10 highest impostor pairs as (score, probe image, ref image).
    """
    n = probe.emb.shape[0]
    gen_s: list[F32] = []
    gen_p: list[I64] = []
    imp_chunks: list[F32] = []
    for i0 in range(0, n, CHUNK):
        i1 = min(n, i0 + CHUNK)
        s, gmask, imask = _chunk_scores(probe, ref, i0, i1, symmetric)
        rows, _ = np.nonzero(gmask)
        gen_s.append(s[gmask])
        gen_p.append(probe.person[i0:i1][rows])
        imp_chunks.append(s[imask])
    impostor = np.concatenate(imp_chunks)
    del imp_chunks
    total = int(impostor.shape[0])
    k = min(tail, total)
    stored = min(total, max(k, math.ceil(keep * total) + 1))
    if stored < total:
        impostor = np.partition(impostor, total - stored)[total - stored:]
    impostor_desc = np.sort(impostor)[::-1].copy()
    del impostor
    cut = impostor_desc[k - 1] if k > 0 else np.inf
    # Second pass: who the highest impostor scores belong to.
    ts: list[F32] = []
    tp: list[I64] = []
    ti: list[I64] = []
    for i0 in range(0, n, CHUNK):
        i1 = min(n, i0 + CHUNK)
        s, _, imask = _chunk_scores(probe, ref, i0, i1, symmetric)
        r, c = np.nonzero(imask & (s >= cut))
        ts.append(s[r, c])
        tp.append(np.stack([probe.person[i0 + r], ref.person[c]], axis=1))
        ti.append(np.stack([probe.image[i0 + r], ref.image[c]], axis=1))
    tscore = np.concatenate(ts)
    order = np.argsort(-tscore, kind="stable")[:k]
    tail_people = np.concatenate(tp)[order].astype(np.int64)
    tail_images = np.concatenate(ti)[order]
    top = [(float(tscore[o]), int(a), int(b))
           for o, (a, b) in zip(order[:10], tail_images[:10], strict=True)]
    pairs = PairSet(
        genuine=np.concatenate(gen_s).astype(np.float32),
        genuine_person=np.concatenate(gen_p).astype(np.int64),
        impostor_desc=impostor_desc,
        impostor_total=total,
        tail_people=tail_people,
        probe_count=np.bincount(probe.person, minlength=people).astype(np.int64),
        ref_count=np.bincount(ref.person, minlength=people).astype(np.int64),
        symmetric=symmetric,
    )
    return pairs, top


@dataclass(frozen=True)
class WatchList:
    """One random list: the listed people, the photo each is enrolled with, and any further photos."""

    people: I64
    enrol_image: I64
    # Further enrolment photos (several templates per person) and the position in ``people`` of each.
    extra_image: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    extra_owner: I64 = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def templates(self) -> I64:
        return np.concatenate([self.enrol_image, self.extra_image])

    @property
    def owner(self) -> I64:
        return np.concatenate([np.arange(self.people.shape[0], dtype=np.int64), self.extra_owner])

    def with_templates(self, person: I64, per_person: int, seed: int) -> WatchList:
        """The same list with up to ``per_person`` photos of each listed person (the first kept)."""
        rng = np.random.default_rng(seed)
        extra: list[int] = []
        owner: list[int] = []
        for pos, (p, first) in enumerate(zip(self.people.tolist(), self.enrol_image.tolist(), strict=True)):
            others = [int(i) for i in np.flatnonzero(person == p) if i != first]
            for i in rng.permutation(others)[: per_person - 1].tolist():
                extra.append(int(i))
                owner.append(pos)
        return WatchList(self.people, self.enrol_image, np.array(extra, np.int64), np.array(owner, np.int64))


def draw_lists(person: I64, people: int, size: int, repeats: int, seed: int) -> list[WatchList]:
    """``repeats`` lists of ``size`` people drawn from everyone, each enrolled with a random photo."""
    rng = np.random.default_rng(seed)
    by_person: list[list[int]] = [[] for _ in range(people)]
    for i, p in enumerate(person.tolist()):
        by_person[p].append(i)
    out = []
    for _ in range(repeats):
        chosen = np.sort(rng.choice(people, size=min(size, people), replace=False))
        enrol = np.array([by_person[p][int(rng.integers(len(by_person[p])))] for p in chosen], np.int64)
        out.append(WatchList(chosen.astype(np.int64), enrol))
    return out


def search(wl: WatchList, gallery: Side, probes: Side, exclude: I64 | None = None) -> Searches:
    """Search every probe against the list enrolled from ``gallery``.

    Mated: probes of listed people, other than the enrolment photos (or than
    ``exclude``, to compare lists on the same searches). Non-mated: probes of
    people not on the list. A person's score is their best template's. Probes
    without a face never find anyone (top score ``NO_FACE``); a template
    without a face never matches.
    """
    row = {int(img): r for r, img in enumerate(gallery.image.tolist())}
    g_rows = np.array([row[int(i)] for i in wl.templates], np.int64)
    owner_person = wl.people[wl.owner]
    g_emb = gallery.emb[g_rows]
    g_valid = gallery.valid[g_rows]
    listed = np.zeros(int(max(probes.person.max(), wl.people.max())) + 1, bool)
    listed[wl.people] = True
    is_listed = listed[probes.person]
    enrolled = np.isin(probes.image, wl.templates if exclude is None else exclude)
    mated = is_listed & ~enrolled
    nonmated = ~is_listed
    tops = np.full(probes.emb.shape[0], NO_FACE, np.float32)
    arg = np.zeros(probes.emb.shape[0], np.int64)
    for i0 in range(0, probes.emb.shape[0], CHUNK):
        i1 = min(probes.emb.shape[0], i0 + CHUNK)
        s = probes.emb[i0:i1] @ g_emb.T
        s[:, ~g_valid] = NO_FACE
        s[~probes.valid[i0:i1]] = NO_FACE
        a = np.argmax(s, axis=1)
        arg[i0:i1] = a
        tops[i0:i1] = s[np.arange(i1 - i0), a]
    hit = owner_person[arg] == probes.person
    return Searches(mated_top=tops[mated], mated_hit=hit[mated] & (tops[mated] > NO_FACE),
                    nonmated_top=tops[nonmated])


def impostor_spread(emb: F32, valid: npt.NDArray[np.bool_], person: I64, seed: int,
                    pairs: int = 200_000) -> float:
    """Standard deviation of cross-person scores over random pairs: the family's score scale."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, emb.shape[0], pairs)
    b = rng.integers(0, emb.shape[0], pairs)
    keep = (person[a] != person[b]) & valid[a] & valid[b]
    s = np.einsum("ij,ij->i", emb[a[keep]], emb[b[keep]])
    return float(s.std())


def fuse(a: F32, b: F32, spread_a: float, spread_b: float) -> F32:
    """Concatenated embeddings whose dot product is ``s_a / spread_a + s_b / spread_b``."""
    out: F32 = np.hstack([a / np.sqrt(spread_a), b / np.sqrt(spread_b)]).astype(np.float32)
    return out
