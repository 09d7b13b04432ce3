"""`python -m serving MODEL`: the server alone, for clients already pointed at MLflow
(MLFLOW_TRACKING_URI); `mlops serve` finds the platform, checks the model, then starts this
with `--fd` (its bound socket) and `--environment-only` and only the serving credentials."""

import argparse
import socket
import sys

from infra.clients import quiet
from infra.errors import PlatformError
from infra.settings import Settings, process_settings, use
from serving.runner import listen, run, serve_token


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--host", help="default: MLOPS_SERVE_HOST")
    parser.add_argument("--port", type=int, help="default: MLOPS_SERVE_PORT")
    parser.add_argument("--fd", type=int, help="serve on this inherited, bound socket")
    parser.add_argument("--environment-only", action="store_true",
                        help="read settings from the environment only: no .env, no secrets.env")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    # A process started with only the serving credentials must not read the admin's back in
    # from MLOPS_HOME/secrets.env or a .env file.
    settings = Settings() if args.environment_only else process_settings()
    use(settings)
    try:
        serve_token(settings)
    except PlatformError as error:
        sys.exit(f"error: {error}")
    quiet()  # MLflow would draw a progress bar at every reload
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = listen(args.host or settings.serve_host, args.port or settings.serve_port)
    try:
        run(args.model, settings, sock)
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly and raises it again
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
