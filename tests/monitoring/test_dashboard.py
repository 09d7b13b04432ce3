"""The dashboard a check feeds, planned from its snapshot's metrics (no server)."""

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
