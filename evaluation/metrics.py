"""Error rates from similarity scores: pure numpy, no I/O.

Convention everywhere: a comparison is accepted when ``score >= threshold``.
The threshold for a target false rate ``f`` over ``n`` non-mated scores is
the lowest one that accepts at most ``floor(f * n)`` of them, so the measured
rate never exceeds the target; when ``f * n < 1`` the target is not
measurable on that many scores and the functions say so (``measurable``).

Confidence intervals: Wilson's score interval for a rate counted at a fixed
threshold, and a bootstrap over *people* (Poisson(1) weights per person, so
that every pair of a resampled person moves together) for figures whose
threshold is itself estimated from the data, such as TAR at a given FMR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

Z95 = 1.959963984540054


def threshold_at_rate(nonmated_desc: npt.NDArray[np.floating[Any]], rate: float,
                      n: int | None = None) -> float:
    """Lowest threshold accepting at most ``floor(rate * n)`` of ``n`` non-mated scores.

    ``nonmated_desc`` is sorted descending and holds all ``n`` scores, or only
    the highest ones (enough for the rates asked).
    """
    stored = nonmated_desc.shape[0]
    n = stored if n is None else n
    if n == 0:
        raise ValueError("no non-mated scores")
    k = math.floor(rate * n + 1e-9)
    if k >= stored:
        if stored < n:
            raise ValueError(f"rate {rate} needs the top {k + 1} scores; only {stored} are kept")
        return -math.inf
    # Accept the k highest: the next representable score above the (k+1)-th highest, in the
    # scores' own precision (a float64 step above a float32 score rounds back onto it).
    below = nonmated_desc[k]
    return float(np.nextafter(below, np.asarray(np.inf, below.dtype)))


def measurable(rate: float, n: int) -> bool:
    """Whether a false rate of ``rate`` can be measured on ``n`` non-mated scores (at least one)."""
    return rate * n >= 1.0 - 1e-9


def accept_rate(scores: npt.NDArray[np.floating[Any]], threshold: float) -> float:
    if scores.shape[0] == 0:
        return math.nan
    return int(np.count_nonzero(scores >= threshold)) / int(scores.shape[0])


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class TarAtFmr:
    fmr: float
    threshold: float
    tar: float
    false_matches: int
    measurable: bool
    ci: tuple[float, float] = (math.nan, math.nan)


def tar_at_fmr(genuine: npt.NDArray[np.floating[Any]], impostor_desc: npt.NDArray[np.floating[Any]],
               fmr: float, n: int) -> TarAtFmr:
    """Genuine acceptance at the threshold where the impostor acceptance is at most ``fmr``.

    ``impostor_desc``: impostor scores sorted descending, all ``n`` of them or the highest.
    """
    t = threshold_at_rate(impostor_desc, fmr, n)
    fm = int(np.count_nonzero(impostor_desc >= t))
    return TarAtFmr(fmr=fmr, threshold=t, tar=accept_rate(genuine, t), false_matches=fm,
                    measurable=measurable(fmr, n))


@dataclass(frozen=True)
class PairSet:
    """Scores of one comparison set, with who each score belongs to (for the bootstrap).

    ``impostor_desc`` holds the highest of the ``impostor_total`` impostor
    scores, sorted descending. The bootstrap needs the people of the highest
    ones only: ``tail_people``
    (K, 2) gives the two people of ``impostor_desc[:K]``. ``probe_count`` and
    ``ref_count`` (per person) let the total impostor weight be computed in
    closed form; ``symmetric`` says each unordered pair is counted once.
    """

    genuine: F32
    genuine_person: I64
    impostor_desc: F32
    impostor_total: int
    tail_people: I64
    probe_count: I64
    ref_count: I64
    symmetric: bool

    @property
    def impostor_pairs(self) -> int:
        return self.impostor_total

    @property
    def genuine_pairs(self) -> int:
        return int(self.genuine.shape[0])


def impostor_weight(m: F64, probe_count: I64, ref_count: I64, symmetric: bool) -> float:
    """Total bootstrap weight of every cross-person pair when person p counts ``m[p]`` times."""
    a = m * probe_count
    b = m * ref_count
    total = float(a.sum() * b.sum() - (a * b).sum())
    return total / 2.0 if symmetric else total


def bootstrap_tar_at_fmr(pairs: PairSet, fmrs: list[float], replicates: int,
                         seed: int) -> list[tuple[float, float]]:
    """95% percentile intervals of TAR at each FMR, resampling people with Poisson(1) weights."""
    rng = np.random.default_rng(seed)
    people = pairs.probe_count.shape[0]
    k = pairs.tail_people.shape[0]
    tail = pairs.impostor_desc[:k]
    out = np.full((replicates, len(fmrs)), np.nan)
    for r in range(replicates):
        m: F64 = np.asarray(rng.poisson(1.0, people), np.float64)
        total = impostor_weight(m, pairs.probe_count, pairs.ref_count, pairs.symmetric)
        w_imp = m[pairs.tail_people[:, 0]] * m[pairs.tail_people[:, 1]]
        cum = np.cumsum(w_imp)
        w_gen = m[pairs.genuine_person]
        gen_total = float(w_gen.sum())
        if total <= 0 or gen_total <= 0:
            continue
        for j, f in enumerate(fmrs):
            # Accept the highest-scoring impostors while their weight stays within f * total.
            n_acc = int(np.searchsorted(cum, f * total + 1e-9, side="right"))
            if n_acc >= k:
                continue  # beyond the stored tail: leave this replicate out
            t = np.nextafter(tail[n_acc], np.float32(np.inf))
            out[r, j] = float(w_gen[pairs.genuine >= t].sum()) / gen_total
    cis: list[tuple[float, float]] = []
    for j in range(len(fmrs)):
        col = out[:, j][~np.isnan(out[:, j])]
        cis.append((float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5)))
                   if col.size else (math.nan, math.nan))
    return cis


def log_rates(high: float, low: float, points: int) -> list[float]:
    """``points`` rates log-spaced from ``high`` down to ``low``."""
    return [float(v) for v in np.logspace(math.log10(high), math.log10(low), points)]


def error_curve(genuine: npt.NDArray[np.floating[Any]], impostor_desc: npt.NDArray[np.floating[Any]],
                n: int, points: int = 30, high: float = 0.1) -> list[tuple[float, float, float]]:
    """(threshold, fmr, fnmr), ascending threshold, FMR log-spaced down to one impostor pair."""
    rows: dict[float, tuple[float, float, float]] = {}
    for f in log_rates(high, 1.0 / n, points):
        t = threshold_at_rate(impostor_desc, f, n)
        fm = int(np.count_nonzero(impostor_desc >= t)) / n
        rows[t] = (t, fm, 1.0 - accept_rate(genuine, t))
    return [rows[t] for t in sorted(rows)]


@dataclass(frozen=True)
class Searches:
    """One-to-many searches against one list: the top candidate of each search.

    Mated searches are photos of listed people (not the enrolment photo);
    ``mated_hit`` says whether the top candidate is the right person.
    """

    mated_top: F32
    mated_hit: npt.NDArray[np.bool_]
    nonmated_top: F32


def fnir_at(s: Searches, threshold: float) -> float:
    """Listed people missed: top candidate wrong, or right but below the threshold."""
    if s.mated_top.shape[0] == 0:
        return math.nan
    found = s.mated_hit & (s.mated_top >= threshold)
    return 1.0 - int(np.count_nonzero(found)) / int(s.mated_top.shape[0])


def fpir_at(s: Searches, threshold: float) -> float:
    return accept_rate(s.nonmated_top, threshold)


def fnir_at_fpir(s: Searches, fpir: float) -> tuple[float, float, bool]:
    """(FNIR, threshold, measurable) at the threshold where FPIR is at most ``fpir``."""
    desc = np.sort(s.nonmated_top)[::-1]
    t = threshold_at_rate(desc, fpir)
    return fnir_at(s, t), t, measurable(fpir, desc.shape[0])


def supports_rate(rate: float, n: int) -> bool:
    """Rule of three: a rate is reportable when ``n`` searches would see about three errors at it."""
    return rate * n >= 3.0


def percentile_interval(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if not math.isnan(v)], np.float64)
    if arr.size == 0:
        return (math.nan, math.nan)
    return (float(np.percentile(arr, 2.5)), float(np.percentile(arr, 97.5)))
