"""The data profile's warnings on frames, its sampling, and its failure path (no servers)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from synthetic import binary_frame, regression_frame

from experiments.profile import (
    NO_TARGET_PARTNER,
    close_profile,
    collect_profile,
    leak_warnings,
    near_constant_columns,
    profile_data,
    sample_for_profile,
    single_feature_scores,
    start_profile,
)

FEATURES = ["x1", "x2", "noise", "colour"]


def test_a_planted_copy_of_the_target_is_called_a_leak_and_honest_features_are_not():
    """Given binary data whose label is an XOR (no single feature tells it) and a column that
    is the label in other words, only that column is a likely leak."""
    frame = binary_frame()
    frame["verdict"] = frame["label"].map({"yes": "approved", "no": "declined"})

    scores = single_feature_scores(frame, "label", "classification", [*FEATURES, "verdict"], seed=0)
    found = leak_warnings(scores, "classification")

    assert len(found) == 1 and found[0].startswith("feature `verdict` alone predicts the target")
    assert max(scores[c] for c in FEATURES) < 0.8


def test_a_regression_leak_is_found_by_r2_even_with_gaps():
    frame = regression_frame()
    frame["y_later"] = frame["y"] * 10 + 3
    frame.loc[frame.index[:5], "y_later"] = np.nan

    found = leak_warnings(single_feature_scores(frame, "y", "regression", ["a", "b", "group", "y_later"],
                                                seed=0), "regression")

    assert [w.split("`")[1] for w in found] == ["y_later"]
    assert "R^2" in found[0]


def test_an_almost_constant_column_is_named_with_its_share():
    frame = pd.DataFrame({"flag": ["on"] * 99 + ["off"], "mixed": ["a", "b"] * 50,
                          "gaps": [np.nan] * 99 + [1.0]})

    found = near_constant_columns(frame, ["flag", "mixed", "gaps"])

    assert found == ["column `flag` is almost constant: `on` in 99.0% of the rows",
                     "column `gaps` is almost constant: missing in 99.0% of the rows"]


def test_long_and_wide_data_is_profiled_on_a_sample_that_says_so():
    frame = pd.DataFrame(np.zeros((50, 8)), columns=[f"c{i}" for i in range(7)] + ["t"])

    rows, covered, notes = sample_for_profile(frame, "t", [f"c{i}" for i in range(7)], seed=0,
                                              max_rows=20, max_columns=3)

    assert len(rows) == 20 and len(covered) == 3
    assert notes == ["Profiled on a sample of 20 of the 50 rows.",
                     "Too wide for a full correlation matrix: correlations cover a sample of 3 of "
                     "the 7 features (with the target)."]
    whole, covered, notes = sample_for_profile(frame, "t", ["c0"], seed=0)
    assert whole is frame and covered == ["c0"] and notes == []


def test_the_html_profile_names_every_column(tmp_path):
    frame = binary_frame()

    profile = profile_data(frame, "label", "classification", ["x1", "x2", "noise"], ["colour"],
                           str(tmp_path), seed=0)

    html = profile.html.read_text()
    assert all(column in html for column in frame.columns)
    assert profile.warnings == () and profile.notes == ()


def test_a_profile_that_fails_in_its_process_is_a_warning_not_an_error():
    """Given data the profile cannot read (its target is not there), the child process reports
    the error and the training gets one warning instead of a profile."""
    pending = start_profile(binary_frame(), "no_such_target", "classification", ["x1"], [], seed=0)
    try:
        profile = collect_profile(pending, timeout_s=120)
    finally:
        close_profile(pending)

    assert profile.html is None
    assert profile.warnings == ("the data profile failed (KeyError: 'no_such_target'); the "
                                "training goes on without it",)
    assert not pending.process.is_alive()


def test_all_numeric_classification_data_is_profiled_and_says_what_it_left_out(tmp_path):
    """Given a class target and numeric features only (Evidently's target correlations need a
    categorical partner: they raised KeyError 'cramer_v'), the profile is made, the note says
    why the target's correlations are missing, and the leak check still runs."""
    frame = binary_frame().drop(columns="colour")

    profile = profile_data(frame, "label", "classification", ["x1", "x2", "noise"], [],
                           str(tmp_path), seed=0)

    assert all(column in profile.html.read_text() for column in frame.columns)
    assert profile.notes == (NO_TARGET_PARTNER["classification"],)


def test_one_histogram_per_column_leaves_the_report_as_evidently_makes_it(monkeypatch):
    """Evidently builds a column's histogram once per statistic; building it once per column
    changes nothing in the report (its content, ids aside)."""
    import contextlib
    import re

    import experiments.profile as profile

    frame = binary_frame()
    args = (frame, "label", "classification", ["x1", "x2", "noise"], ["colour"],
            ["x1", "x2", "noise", "colour"])

    def content(snapshot) -> str:
        text = json.dumps(snapshot.dict(), sort_keys=True, default=str)
        return re.sub(r"[0-9a-f]{32}|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "<id>", text)

    reused = content(profile._evidently_report(*args))
    monkeypatch.setattr(profile, "one_histogram_per_column", contextlib.nullcontext)
    assert content(profile._evidently_report(*args)) == reused


HELPER_SCRIPT = """
import json, os, signal, sys
from synthetic import binary_frame
from experiments.profile import close_profile, collect_profile, start_profile
from flows import spare
spare.fork_spare()
pending = start_profile(binary_frame(), "label", "classification", ["x1", "x2", "noise"],
                        ["colour"], seed=0, behind=spare.behind)
if sys.argv[1] == "kill":
    os.kill(spare._helper.pid, signal.SIGKILL)
profile = collect_profile(pending, timeout_s=120)
html = profile.html.read_text() if profile.html else ""
close_profile(pending)
print(json.dumps({"spawned": pending.process is not None, "warnings": list(profile.warnings),
                  "html": all(c in html for c in ("x1", "x2", "noise", "colour")),
                  "files_left": os.path.exists(pending.directory.name)}))
"""


def _profile_in_a_helper(end: str) -> dict:
    tests = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", HELPER_SCRIPT, end], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": f"{tests.parent}:{tests}"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_a_training_with_a_helper_process_profiles_there_and_one_that_dies_is_a_warning():
    """Given a command with a helper process (flows/spare.py: a warm training's), the profile is
    a job there, no process is spawned, and it is the same profile; given the helper killed
    before it is done, the training gets one warning instead, and the files are removed."""
    made = _profile_in_a_helper("finish")
    assert made == {"spawned": False, "warnings": [], "html": True, "files_left": False}

    killed = _profile_in_a_helper("kill")
    assert killed["spawned"] is False and killed["html"] is False
    assert len(killed["warnings"]) == 1
    assert killed["warnings"][0].startswith("the data profile failed (its process ended (")
    assert killed["files_left"] is False
