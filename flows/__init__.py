"""Prefect flows and the `mlops` command line."""
