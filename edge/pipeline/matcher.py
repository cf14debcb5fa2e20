"""Match embeddings against the verified watchlist.

All templates sit in one (T, 128) float32 matrix, rows grouped by subject, so a
query is one matrix product followed by a per-subject max (``reduceat`` over
the group starts). The margin is measured to the second-best *subject*, not the
second-best template, because several templates of one person are expected to
score alike. Entries past their ``expires_at`` at load time are left out and
counted; the matcher is rebuilt when the bundle changes or entries expire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from edge.watchlist.bundle import Entry, VerifiedBundle

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class MatchResult:
    """Best subject for one query. ``matched`` is ``score >= threshold``."""

    entry: Entry
    score: float
    second_score: float  # best score of any other subject; -1.0 if there is none
    threshold: float

    @property
    def margin(self) -> float:
        return self.score - self.second_score

    @property
    def matched(self) -> bool:
        return self.score >= self.threshold


def effective_threshold(bundle_threshold: float, *raise_to: float | None) -> float:
    return max([bundle_threshold, *(t for t in raise_to if t is not None)])


class Matcher:
    def __init__(
        self,
        entries: tuple[Entry, ...],
        templates: FloatArray,
        starts: npt.NDArray[np.int64],
        threshold: float,
        skipped_expired: int = 0,
    ) -> None:
        self.entries = entries
        self.templates = np.ascontiguousarray(templates, dtype=np.float32)
        self.starts = starts
        self.threshold = threshold
        self.skipped_expired = skipped_expired

    @classmethod
    def from_bundle(cls, bundle: VerifiedBundle, now: datetime, *raise_to: float | None) -> Matcher:
        """The matcher for ``bundle`` at ``now``, with the one effective threshold.

        ``raise_to``: the deployment's operating threshold (``edge.watchlist.operating``)
        and the device's own ``matching.threshold``; each may only raise the bundle's
        threshold, never lower it. This is the only place the effective threshold is
        worked out; alerts and status read ``Matcher.threshold``.
        """
        live = [i for i, e in enumerate(bundle.entries) if e.expires_at > now]
        off = bundle.offsets
        if len(live) == len(bundle.entries):
            templates = bundle.templates
        elif live:
            templates = np.concatenate([bundle.templates[off[i] : off[i + 1]] for i in live])
        else:
            templates = np.zeros((0, bundle.templates.shape[1]), dtype=np.float32)
        counts = np.array([off[i + 1] - off[i] for i in live], dtype=np.int64)
        starts = np.zeros(len(live), dtype=np.int64)
        if len(live) > 1:
            np.cumsum(counts[:-1], out=starts[1:])
        return cls(
            tuple(bundle.entries[i] for i in live),
            templates,
            starts,
            effective_threshold(bundle.header.threshold, *raise_to),
            skipped_expired=len(bundle.entries) - len(live),
        )

    def __len__(self) -> int:
        return len(self.entries)

    def raised(self, *raise_to: float | None) -> Matcher:
        """The same entries and templates (shared, not copied) at the raised effective threshold."""
        return Matcher(self.entries, self.templates, self.starts,
                       effective_threshold(self.threshold, *raise_to), self.skipped_expired)

    def subject_scores(self, queries: FloatArray) -> FloatArray:
        """(Q, D) L2-normalised queries -> (Q, S) best cosine per subject."""
        q = np.asarray(queries, dtype=np.float32).reshape(-1, self.templates.shape[1])
        # (T, D) @ (D, Q) runs as one BLAS call on the contiguous template matrix;
        # q @ templates.T is several times slower for a single query.
        sims = self.templates @ q.T
        out: FloatArray = np.maximum.reduceat(sims, self.starts, axis=0).T
        return out

    def match_many(self, queries: FloatArray) -> list[MatchResult | None]:
        """Top-1 subject with its margin for each query; None when the list is empty."""
        if not self.entries:
            return [None] * int(np.asarray(queries).reshape(-1, self.templates.shape[1]).shape[0])
        scores = self.subject_scores(queries)
        results: list[MatchResult | None] = []
        for row in scores:
            if row.shape[0] >= 2:
                top2 = np.argpartition(row, -2)[-2:]
                best, second = (top2[1], top2[0]) if row[top2[1]] >= row[top2[0]] else top2
                second_score = float(row[second])
            else:
                best, second_score = 0, -1.0
            results.append(
                MatchResult(self.entries[int(best)], float(row[best]), second_score,
                            self.threshold)
            )
        return results

    def match(self, query: FloatArray) -> MatchResult | None:
        return self.match_many(query)[0]
