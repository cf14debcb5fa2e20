"""STAND-IN for `make pi-check`: not Raspberry Pi's picamera2 (see the package description)."""

raise ImportError(
    "picamera2 stand-in from edge's pi-check: the real python3-picamera2 comes from the "
    "Raspberry Pi archive (archive.raspberrypi.com, bookworm)"
)
