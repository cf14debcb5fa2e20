"""``make bench``: speed and memory figures, each section against an in-process baseline."""
