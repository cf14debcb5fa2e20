"""``make eval``: the recogniser measured at scale, and the model card written from it.

Not part of the firmware: the device and its package do not carry it.
"""
