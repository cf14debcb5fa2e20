"""Signed reviews: one operator's decision about one alert, signed with that operator's own key.

A review travels on ``<prefix>/review`` as a signed envelope (edge.watchlist.envelope)
of payload type ``REVIEW_TYPE`` with an empty body and this canonical-JSON header::

    {"schema": "edge.review/1", "device_id": "cam-1", "event_id": "...",
     "outcome": "confirmed", "verifier_id": "officer-17",
     "decided_at": "2026-11-22T03:10:00.000Z", "note": "..."}

The fields other than ``device_id`` are those of :mod:`edge.accountability.adjudication`
and are validated by its ``parse_review``. The envelope carries exactly one
signature, by a key the device's trust root lists under its ``review`` role,
and ``verifier_id`` must be the name the trust root gives that key: the
verifier the device records is the key, so "two verifiers" means two distinct
keys. A review for another device is refused (it cannot be replayed across
devices). Unsigned JSON, unknown or non-review keys, tampered bytes are
refused with a typed error. Pure: bytes and the trust root in, a Review out.
"""

from __future__ import annotations

import nacl.signing

from edge.accountability.adjudication import MAX_REVIEW_BYTES, Review, parse_review
from edge.errors import MalformedError, ReviewError
from edge.watchlist import canonical
from edge.watchlist.envelope import REVIEW_TYPE, Envelope, decode
from edge.watchlist.trust import TrustRoot

ROLE = "review"


def review_envelope(review: Review, device_id: str) -> Envelope:
    """The unsigned envelope of ``review`` addressed to ``device_id``."""
    header = {**review.to_json(), "device_id": device_id}
    return Envelope(REVIEW_TYPE, canonical.dumps(header), b"")


def sign_review(review: Review, device_id: str, key: nacl.signing.SigningKey) -> bytes:
    """The wire bytes of ``review`` for ``device_id``, signed by the operator's ``key``."""
    return review_envelope(review, device_id).sign(key).encode()


def verify_review(data: bytes, trust: TrustRoot, device_id: str) -> Review:
    """The review in ``data`` if a ``review`` key of ``trust`` signed it for ``device_id``."""
    env = decode(data, max_header=MAX_REVIEW_BYTES, max_body=0, expect=REVIEW_TYPE)
    if len(env.signatures) != 1:
        raise ReviewError(f"a review carries exactly one operator signature, not {len(env.signatures)}")
    (kid,) = trust.verify(env, ROLE)
    try:
        obj = canonical.loads_object(env.header, "review")
    except MalformedError as exc:
        raise ReviewError(str(exc)) from exc
    target = obj.pop("device_id", None)
    if target != device_id:
        raise ReviewError(f"review addressed to device {target!r:.40}, this is {device_id!r}")
    review = parse_review(canonical.dumps(obj))
    signer = trust.names[kid]
    if review.verifier_id != signer:
        raise ReviewError(f"review claims verifier {review.verifier_id!r} but is signed by key '{signer}'")
    return review
