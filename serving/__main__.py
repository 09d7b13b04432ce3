"""`python -m serving MODEL`: the server alone, for clients already pointed at MLflow
(MLFLOW_TRACKING_URI); `mlops serve` finds the platform and checks the model first."""

import argparse
import sys

from infra.clients import quiet
from infra.errors import PlatformError
from infra.settings import process_settings
from serving.runner import listen, run, serve_token


def main() -> None:
    settings = process_settings()
    quiet()  # MLflow would draw a progress bar at every reload
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--host", default=settings.serve_host)
    parser.add_argument("--port", type=int, default=settings.serve_port)
    args = parser.parse_args()
    try:
        serve_token(settings)
    except PlatformError as error:
        sys.exit(f"error: {error}")
    run(args.model, settings, listen(args.host, args.port))


if __name__ == "__main__":
    main()
