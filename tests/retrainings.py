"""Drift retrainings as the recovery tests drive them: a spec, shifted batches, and the
retrain flow run each check caused, through the CLI and Prefect's client."""

import json
import textwrap

from synthetic import binary_frame

FINAL = {"COMPLETED", "CANCELLED", "FAILED", "CRASHED"}


def write_spec(folder, name: str, cooldown_minutes: int) -> str:
    binary_frame(n=200, seed=11).to_csv(folder / "train.csv", index=False)
    spec = folder / f"{name}.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {name}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        monitoring: {{drift_share: 0.3, cooldown_minutes: {cooldown_minutes}}}
        """))
    return str(spec)


def batch(folder, seed: int, shift: float = 2.0) -> str:
    frame = binary_frame(n=200, seed=seed)
    for column in ("x1", "x2", "noise"):
        frame[column] = frame[column] + shift
    path = folder / f"batch-{seed}.csv"
    frame.to_csv(path, index=False)
    return str(path)


def cli_json(run, *args: str) -> dict:
    done = run(*args, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def retrain_run_of(check_id: str):
    """The retrain flow run the drift event of a check created, once it exists."""
    from prefect.client.orchestration import get_client

    from flows.recovery import monitoring_run_of, retrain_runs

    with get_client(sync_client=True) as client:
        return next((r for r in retrain_runs(client) if monitoring_run_of(r) == check_id), None)


def state_of(check_id: str) -> str | None:
    run = retrain_run_of(check_id)
    return run.state.type.value if run is not None and run.state is not None else None


def retrain_slots_taken() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name("retrain/retrain").global_concurrency_limit.active_slots
