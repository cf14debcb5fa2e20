"""Signed watchlist bundles, deployment orders and the device's root of trust.

The verifiers here are pure: they take bytes, the trust root, the device
identity and ``now`` and return a typed result or raise a typed error from
``edge.errors``. File and clock access live in ``state.BundleStore`` and the CLI.
"""
