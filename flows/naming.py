"""Flow runs named and tagged for the Prefect UI: what they do, to which model, and why.

Prefect names a run after an animal (`dashing-crocodile`), which says nothing on the Runs
page of a team with ten models. Each of our flows renames its run when it knows its model
(`train penguins`, `monitor penguins`, `retrain penguins after drift`) and adds the tags
`model:<name>` and `trigger:<kind>`, so the Runs page filters by model and by cause.
"""

from prefect.client.orchestration import get_client
from prefect.runtime import flow_run

MODEL_TAG = "model:"
TRIGGER_TAG = "trigger:"


def run_name(kind: str, model: str, trigger: str) -> str:
    """`train penguins`, `monitor penguins`, `retrain penguins after drift`."""
    return f"{kind} {model} after {trigger}" if kind == "retrain" else f"{kind} {model}"


def run_tags(current: list[str], model: str, trigger: str) -> list[str]:
    """The run's tags with this model and trigger in place of any earlier ones."""
    kept = [t for t in current if not t.startswith((MODEL_TAG, TRIGGER_TAG))]
    return sorted({*kept, f"{MODEL_TAG}{model}", f"{TRIGGER_TAG}{trigger}"})


def name_this_run(kind: str, model: str, trigger: str) -> None:
    """Rename the flow run in progress and tag it with its model and trigger."""
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.get_id(), name=run_name(kind, model, trigger),
                               tags=run_tags(flow_run.get_tags(), model, trigger))
