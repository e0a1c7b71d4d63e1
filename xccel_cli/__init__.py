"""xccel: sessionize webshop clickstream dumps in PostgreSQL and report time-to-first-order metrics."""

__version__ = "0.1.0"
