"""Track-level decision: one alert per passer-by, not one per matching frame.

Each embedded face of a track gives an observation: the matcher's top-1 subject
(None below threshold) and its score. A track is decided for subject S once S is
the match in at least ``k`` of its last ``n`` observations; it then yields exactly
one :class:`Decision` and is closed.

A per-subject cooldown absorbs track fragmentation (the same person re-acquired
as a new track after an occlusion or a detector miss): a decision for S is
suppressed while S was matched on an already decided track less than
``cooldown_s`` seconds ago. Times are the frames' monotonic ``ts``, passed in;
nothing here reads a clock. Evidence is kept only for matching observations, so
nothing about a non-match is retained.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from edge.config import TrackingConfig  # holds the one default of each tracking.* key

E = TypeVar("E")


@dataclass(frozen=True)
class Observation(Generic[E]):
    subject: str
    score: float
    at: float
    evidence: E


@dataclass(frozen=True)
class Decision(Generic[E]):
    track_id: int
    subject: str
    hits: int  # matches of ``subject`` in the window
    window: int  # observations in the window
    best: Observation[E]  # highest-scoring match of the subject (for the reviewer's crop)
    latest: Observation[E]  # the match that completed the decision


@dataclass
class _TrackState(Generic[E]):
    window: deque[tuple[str | None, float]]
    matches: deque[Observation[E]]
    subject: str | None = None  # set once decided (alerted or suppressed)


@dataclass
class TrackDecider(Generic[E]):
    k: int = TrackingConfig.k
    n: int = TrackingConfig.n
    cooldown_s: float = TrackingConfig.cooldown_s
    suppressed: int = 0  # decisions swallowed by the cooldown
    _tracks: dict[int, _TrackState[E]] = field(default_factory=dict)
    _last_seen: dict[str, float] = field(default_factory=dict)  # subject -> last decided match

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ValueError("need 1 <= k <= n")

    def observe(self, track_id: int, subject: str | None, score: float, at: float,
                evidence: E) -> Decision[E] | None:
        """Record one embedded face of a track; returns the track's decision once, or None."""
        state = self._tracks.get(track_id)
        if state is None:
            state = _TrackState(deque(maxlen=self.n), deque(maxlen=self.n))
            self._tracks[track_id] = state
        if state.subject is not None:  # decided: only keep the cooldown alive
            if subject == state.subject:
                self._touch(subject, at)
            return None
        state.window.append((subject, score))
        if subject is not None:
            state.matches.append(Observation(subject, score, at, evidence))
        counts = Counter(s for s, _ in state.window if s is not None)
        if not counts:
            return None
        chosen, hits = max(counts.items(),
                           key=lambda kv: (kv[1], sum(sc for s, sc in state.window if s == kv[0])))
        if hits < self.k:
            return None
        state.subject = chosen
        last = self._last_seen.get(chosen)
        self._touch(chosen, at)
        if last is not None and at - last < self.cooldown_s:
            self.suppressed += 1
            return None
        own = [o for o in state.matches if o.subject == chosen]
        return Decision(track_id=track_id, subject=chosen, hits=hits, window=len(state.window),
                        best=max(own, key=lambda o: o.score), latest=own[-1])

    def decided(self, track_id: int) -> bool:
        state = self._tracks.get(track_id)
        return state is not None and state.subject is not None

    def end_track(self, track_id: int) -> None:
        """Forget a finished track (its evidence goes with it)."""
        self._tracks.pop(track_id, None)

    def _touch(self, subject: str, at: float) -> None:
        self._last_seen[subject] = max(at, self._last_seen.get(subject, at))
