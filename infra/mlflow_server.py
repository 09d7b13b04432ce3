"""`mlflow server` in one process: `python -m infra.mlflow_server [mlflow server options]`.

MLflow's command checks its options, opens the stores (migrating a new database) and then
starts a second Python, `python -m uvicorn ... mlflow.server.fastapi_app:app`, which imports
MLflow and opens the same stores again: 3 s and 3 CPU-s of every `mlops up` before the
server answers (measured: healthy 6.2-6.8 s through `mlflow server`, 3.0-4.1 s here). This
runs MLflow's own command unchanged up to that point, then serves with uvicorn in this
process, with the environment MLflow would have given the child; the stores it opened stay
open. Only the command's last step is replaced, so every option means what it does for
`mlflow server`, and a MLflow that starts its server another way fails here, loudly.
"""

import os
import sys
from collections.abc import Mapping, Sequence

UVICORN = ("-m", "uvicorn")


def serve_here(cmd: Sequence[str], extra_env: Mapping[str, str] | None = None, **_) -> None:
    """What `mlflow server` would start as its child, `python -m uvicorn OPTIONS APP`, run in
    this process; returns only by exiting, when the server stops."""
    if tuple(cmd[1:3]) != UVICORN:
        raise RuntimeError(f"mlflow server would start {' '.join(cmd[:3])!r}, not uvicorn: "
                           "infra/mlflow_server.py does not know how to serve that")
    os.environ.update(extra_env or {})
    import uvicorn.main

    uvicorn.main.main(list(cmd[3:]), prog_name="uvicorn")  # click: exits when it stops


def main(argv: Sequence[str] | None = None) -> None:
    """`mlflow server` with `argv` (this process's arguments by default), in this process."""
    import mlflow.server
    from mlflow.cli import cli

    if not callable(getattr(mlflow.server, "_exec_cmd", None)):
        raise RuntimeError("this MLflow starts its server without mlflow.server._exec_cmd: "
                           "start it with `mlflow server` (infra/platform.py)")
    mlflow.server._exec_cmd = serve_here
    cli(["server", *(sys.argv[1:] if argv is None else argv)], prog_name="mlflow")


if __name__ == "__main__":
    main()
