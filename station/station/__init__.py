"""The operators' station: the central half of the watchlist system (never on a device)."""
