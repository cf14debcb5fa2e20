"""Edge firmware for accountable live facial-recognition watchlist appliances."""

__version__ = "0.1.0"
