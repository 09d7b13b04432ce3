"""What `mlops train` imports before its flow starts: only what every training uses."""

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
