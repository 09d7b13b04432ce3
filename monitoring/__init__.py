"""Monitoring: whether live data has drifted from the reference, and whether to retrain."""
