"""Which face of a photo is the one meant: the largest, ties broken by centrality.

``edge verify`` and enrolment read one person's photo; the person meant is the
one nearest the camera. "Largest" beats "best quality" because a sharp small
face in the background (a poster, a passer-by) can out-score a large one that
is slightly blurred, and then the wrong person is enrolled. Widths within
``TIE_PX`` count as equal; the face nearer the image centre wins.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.perception.types import Detection

TIE_PX = 2.0
# A second face at least this share of the main face's width makes it unclear whose photo it is.
RIVAL_SHARE = 0.8


def _rank(det: Detection, size: tuple[int, int]) -> tuple[float, float]:
    h, w = size
    cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
    off = ((cx - w / 2) ** 2 + (cy - h / 2) ** 2) ** 0.5
    return det.width, -off


def main_index(dets: Sequence[Detection], size: tuple[int, int]) -> int | None:
    """Index of the largest detection (ties within ``TIE_PX`` by distance to the centre)."""
    if not dets:
        return None
    widest = max(d.width for d in dets)
    tied = [i for i, d in enumerate(dets) if d.width >= widest - TIE_PX]
    return max(tied, key=lambda i: _rank(dets[i], size)[1])


def rival_index(dets: Sequence[Detection], main: int) -> int | None:
    """Another detection nearly as large as ``main``, if any."""
    limit = RIVAL_SHARE * dets[main].width
    return next((i for i, d in enumerate(dets) if i != main and d.width >= limit), None)


__all__ = ["RIVAL_SHARE", "TIE_PX", "main_index", "rival_index"]
