"""Serving a champion over HTTP and recording its live traffic for monitoring."""
