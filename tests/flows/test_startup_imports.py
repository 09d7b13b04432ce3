"""What `mlops train` imports before its flow starts (only what every training uses), and
the cycle collector while it imports."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Each is imported where it is used, not by the CLI's start: SQLAlchemy serves only studies
# kept in a database (0.25 s), pyplot only the plots after the search (0.3 s).
LATER = ("sqlalchemy", "matplotlib.pyplot")


def test_the_training_command_starts_without_what_only_some_trainings_use():
    """Given a fresh interpreter that imports what `mlops train` imports before its flow
    starts (the CLI, the pre-flight checks, the flow), none of LATER is imported."""
    code = ("import json, sys\n"
            "import flows.cli, flows.preflight, flows.train\n"
            f"print(json.dumps([m for m in {list(LATER)!r} if m in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)

    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_a_flow_command_imports_without_collecting_and_starts_its_flow_with_the_imports_frozen():
    """Given a fresh interpreter doing what `mlops train` does before its flow, no full
    collection runs while the flow's modules are imported, and when the flow starts the
    collector is on again with everything imported so far frozen (out of its passes)."""
    code = ("import gc, json\n"
            "from flows import cli\n"
            "cli._import_without_collecting()\n"
            "full = gc.get_stats()[2]['collections']\n"
            "import flows.preflight, flows.train\n"
            "full = gc.get_stats()[2]['collections'] - full\n"
            "paused = not gc.isenabled()\n"
            "cli._before_in_process_flow()\n"
            "print(json.dumps({'full_passes_importing': full, 'paused': paused,\n"
            "                  'enabled': gc.isenabled(), 'frozen': gc.get_freeze_count()}))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])

    assert found["paused"] and found["full_passes_importing"] == 0
    assert found["enabled"] and found["frozen"] > 100_000, found
