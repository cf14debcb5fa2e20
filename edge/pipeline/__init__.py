"""The pure per-frame core: motion gate, tracker, recognizer, matcher, track decision.

No I/O, no threads, no clock reads: frames and time come in as arguments. Nothing
here imports ``edge.sources`` or ``edge.runtime``.
"""
