"""The dashboard a check feeds, planned from its snapshot's metrics (no server)."""

import pandas as pd
import pytest

from monitoring.dashboard import (
    COLUMN_DRIFT,
    DRIFT_SHARE,
    QUALITY,
    ROWS,
    Panel,
    Series,
    merge_panels,
    metrics_in,
    plan_panels,
)

DRIFT = [("DriftedColumnsCount", {}), ("ValueDrift", {"column": "x1"}), ("ValueDrift", {"column": "x2"}),
         ("RowCount", {})]


@pytest.mark.parametrize(("metrics", "titles"), [
    (DRIFT, [DRIFT_SHARE, COLUMN_DRIFT, ROWS]),
    (DRIFT + [("Accuracy", {}), ("F1Score", {}), ("Precision", {})],
     [DRIFT_SHARE, COLUMN_DRIFT, ROWS, QUALITY]),
    (DRIFT + [("RMSE", {}), ("MAE", {})], [DRIFT_SHARE, COLUMN_DRIFT, ROWS, QUALITY]),
    ([("ValueDrift", {"column": "x1"})], [COLUMN_DRIFT]),
    ([], []),
])
def test_panels_follow_the_metrics_a_snapshot_holds(metrics, titles):
    assert [p.title for p in plan_panels(metrics)] == titles


def test_each_drift_panel_picks_its_values():
    panels = {p.title: p for p in plan_panels(DRIFT + [("MAE", {}), ("Accuracy", {})])}

    assert panels[DRIFT_SHARE].series == (
        Series("share of columns drifted", "DriftedColumnsCount", (("value_type", "share"),)),)
    assert [s.labels for s in panels[COLUMN_DRIFT].series] == [(("column", "x1"),), (("column", "x2"),)]
    assert panels[ROWS].plot == "bar"
    # Quality metrics that are a mean and a spread plot their mean; the others their value.
    assert [(s.metric, s.labels) for s in panels[QUALITY].series] == [
        ("Accuracy", ()), ("MAE", (("value_type", "mean"),))]


def test_metrics_are_read_from_a_snapshot_dict():
    raw = {"metrics": [{"config": {"type": "evidently:metric_v2:ValueDrift", "column": "x1"}},
                       {"config": {"type": "evidently:metric_v2:RowCount"}}]}

    assert metrics_in(raw) == [("ValueDrift", {"type": "evidently:metric_v2:ValueDrift", "column": "x1"}),
                               ("RowCount", {"type": "evidently:metric_v2:RowCount"})]


A, B, C = (Series(c, "ValueDrift", (("column", c),)) for c in "abc")
ROWS_PANEL = Panel(ROWS, "bar", (Series("rows", "RowCount"),))


@pytest.mark.parametrize(("existing", "wanted", "merged"), [
    ((), (Panel(COLUMN_DRIFT, "line", (A,)),), (Panel(COLUMN_DRIFT, "line", (A,)),)),
    ((Panel(COLUMN_DRIFT, "line", (A, B)),), (Panel(COLUMN_DRIFT, "line", (A, B)),),
     (Panel(COLUMN_DRIFT, "line", (A, B)),)),
    # A new column adds a line; a column no longer checked keeps its line (older points).
    ((Panel(COLUMN_DRIFT, "line", (A, B)),), (Panel(COLUMN_DRIFT, "line", (B, C)),),
     (Panel(COLUMN_DRIFT, "line", (A, B, C)),)),
    # A check without labels takes no quality panel away; a panel a person added stays.
    ((Panel(QUALITY, "line", (Series("Accuracy", "Accuracy"),)), Panel("mine", "line", ())), (ROWS_PANEL,),
     (Panel(QUALITY, "line", (Series("Accuracy", "Accuracy"),)), Panel("mine", "line", ()), ROWS_PANEL)),
])
def test_merging_only_ever_adds(existing, wanted, merged):
    assert merge_panels(existing, wanted) == merged


@pytest.mark.integration
def test_live_quality_is_charted_when_snapshots_carry_it(platform, tmp_path):
    """Given two snapshots holding Evidently's classification metrics (as a check on labelled
    live rows makes), published to Evidently's UI, then the project's dashboard gains a live
    quality panel and Evidently serves two points for each of its lines."""
    import json
    import urllib.request

    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.metrics import RowCount
    from evidently.presets import ClassificationPreset

    from monitoring.dashboard import SnapshotInfo, publish_snapshot

    definition = DataDefinition(numerical_columns=["x"], classification=[
        BinaryClassification(target="label", prediction_labels="prediction")])
    urls = []
    for seed, flipped in ((0, 10), (1, 40)):  # the second window has more wrong answers
        frame = pd.DataFrame({"x": range(100), "label": [i % 2 for i in range(100)]})
        frame["prediction"] = [1 - y if i < flipped else y for i, y in enumerate(frame["label"])]
        snapshot = Report([ClassificationPreset(), RowCount()]).run(
            Dataset.from_pandas(frame, data_definition=definition))
        path = tmp_path / f"{seed}.json"
        path.write_text(snapshot.dumps())
        urls.append(publish_snapshot(platform.evidently_url, "", "it-quality-panel", path,
                                     SnapshotInfo(f"check {seed}", {"seed": str(seed)})))

    project = urls[0].rsplit("/", 1)[1]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{platform.evidently_url}/api/v2/dashboards/{project}", timeout=10) as answer:
        panels = {p["title"]: p for p in json.loads(answer.read())["panels"]}
    wanted = {"tags": [], "metadata": {}, "metric": "evidently:metric_v2:Accuracy", "metric_labels": {}}
    body = json.dumps({"series_filter": [wanted]}).encode()
    request = urllib.request.Request(f"{platform.evidently_url}/api/v2/snapshots/{project}/data_series_batch",
                                     data=body, headers={"Content-Type": "application/json"})
    with opener.open(request, timeout=10) as answer:
        [accuracy] = json.loads(answer.read())["series"]

    assert urls[0] == urls[1]
    assert [v["metric"] for v in panels[QUALITY]["values"]] == [
        "evidently:metric_v2:Accuracy", "evidently:metric_v2:F1Score"]
    assert accuracy["values"] == [0.9, 0.6]
    assert ROWS in panels and DRIFT_SHARE not in panels
