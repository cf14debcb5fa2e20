"""The running process: wiring, the runner's threads, the active watchlist, systemd, selftest."""
