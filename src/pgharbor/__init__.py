"""pgharbor: central WAL archive and point-in-time recovery for fleets of PostgreSQL servers."""

__version__ = "0.1.0"
