"""The MLflow model registry: registration, champion/challenger decisions, aliases."""
