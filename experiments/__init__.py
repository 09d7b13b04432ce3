"""Experiment specs, data, contracts, search spaces, the objective and model pipelines."""
