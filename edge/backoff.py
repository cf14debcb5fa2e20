"""The one reconnect backoff: exponential, capped, optionally jittered.

Used by the MQTT link (jittered: a fleet cut off by one broker outage must not come
back in the same instant) and by live streams (``u = 1``: one camera, no jitter).
"""

from __future__ import annotations


def backoff_delay(attempt: int, low: float, high: float, u: float) -> float:
    """``min(high, low * 2**attempt)`` scaled by ``0.5 + 0.5 * u``, ``u`` in [0, 1].

    Half the delay is random when ``u`` is drawn uniformly ("equal jitter");
    ``u = 1`` gives the plain capped doubling.
    """
    base = min(high, low * float(2 ** min(attempt, 30)))
    return base * (0.5 + 0.5 * u)
