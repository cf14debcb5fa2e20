"""The signing authority's side: enrolment, bundle and trust building, the signing commands.

The device never runs this code; it only verifies what it produces (``edge.watchlist``),
as python-tuf keeps ``tuf/repository`` apart from ``tuf/ngclient``.
"""
