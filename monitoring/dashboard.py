"""Monitoring over time in Evidently's UI: one project per model, one snapshot per check.

The project (named after the model, made on first use) holds a dashboard of line charts
over the checks: drift share, each column's drift score, rows checked, and live quality
when the snapshots carry classification or regression metrics. Everything goes through
the UI's HTTP API, so a flow on another machine publishes the same way.

What the dashboard shows is planned here as plain values (`Panel`, `Series`), from the
metric types a snapshot holds; only `publish_snapshot` touches Evidently.
"""

import json
from dataclasses import dataclass
from pathlib import Path

TAB = "Monitoring"
DRIFT_SHARE = "Drift share"
COLUMN_DRIFT = "Drift score by column"
ROWS = "Rows checked"
QUALITY = "Live quality"
# The quality metrics a check's report may carry (Evidently's ClassificationPreset and
# RegressionPreset), and the part of each value to plot.
QUALITY_METRICS = (("Accuracy", ()), ("F1Score", ()), ("RocAuc", ()),
                   ("RMSE", ()), ("MAE", (("value_type", "mean"),)), ("R2Score", ()))


@dataclass(frozen=True)
class Series:
    """One line: a metric type (Evidently's short name) and the labels that pick its values."""

    legend: str
    metric: str
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Panel:
    title: str
    plot: str  # "line" | "bar"
    series: tuple[Series, ...]


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot is named and tagged with in the project."""

    name: str
    metadata: dict[str, str]


def metrics_in(snapshot: dict) -> list[tuple[str, dict]]:
    """(short metric type, config) of each metric in a snapshot's `dict()`."""
    return [(m["config"]["type"].split(":")[-1], m["config"]) for m in snapshot.get("metrics", [])]


def plan_panels(metrics: list[tuple[str, dict]]) -> tuple[Panel, ...]:
    """The panels a snapshot with these metrics feeds: drift share, per-column drift and rows
    when it holds them, live quality when it holds quality metrics."""
    types = {kind for kind, _ in metrics}
    columns = list(dict.fromkeys(c["column"] for kind, c in metrics if kind == "ValueDrift"))
    panels = []
    if "DriftedColumnsCount" in types:
        panels.append(Panel(DRIFT_SHARE, "line", (
            Series("share of columns drifted", "DriftedColumnsCount", (("value_type", "share"),)),)))
    if columns:
        panels.append(Panel(COLUMN_DRIFT, "line", tuple(
            Series(c, "ValueDrift", (("column", c),)) for c in columns)))
    if "RowCount" in types:
        panels.append(Panel(ROWS, "bar", (Series("rows", "RowCount"),)))
    quality = tuple(Series(kind, kind, labels) for kind, labels in QUALITY_METRICS if kind in types)
    if quality:
        panels.append(Panel(QUALITY, "line", quality))
    return tuple(panels)


def merge_panels(existing: tuple[Panel, ...], wanted: tuple[Panel, ...]) -> tuple[Panel, ...]:
    """The dashboard after a check: a wanted panel joins, or adds its new lines to the panel
    of the same title; lines and panels are never taken away (older checks still have them)."""
    merged = {panel.title: panel for panel in existing}
    for panel in wanted:
        old = merged.get(panel.title)
        if old is None:
            merged[panel.title] = panel
        else:
            lines = old.series + tuple(s for s in panel.series if s not in old.series)
            merged[panel.title] = Panel(old.title, old.plot, lines)
    return tuple(merged.values())


def dashboard_url(base_url: str, project_id: str) -> str:
    return f"{base_url.rstrip('/')}/projects/{project_id}"


def publish_snapshot(base_url: str, secret: str, project: str, snapshot_path: Path,
                     info: SnapshotInfo) -> str:
    """Add the snapshot saved at `snapshot_path` to `project` (made when missing), keep its
    dashboard in step, and return the dashboard's address. Raises on any failure."""
    # Imported here: Evidently takes seconds to import.
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import RemoteWorkspace

    workspace = RemoteWorkspace(base_url, secret=secret or None)
    # Two first checks at once may both make the project: all then use the oldest (ids are
    # UUIDv7, in order of creation), so one dashboard gets every later check.
    found = sorted(str(p.id) for p in workspace.search_project(project) if p.name == project)
    project_id = found[0] if found else workspace.create_project(
        project, description=f"Drift and quality checks of the model {project}").id
    data = json.loads(snapshot_path.read_text())
    data.update(name=info.name, metadata={**(data.get("metadata") or {}), **info.metadata})
    snapshot = Snapshot.load_dict(data)
    _update_dashboard(workspace, project_id, plan_panels(metrics_in(snapshot.dict())))
    workspace.add_run(project_id, snapshot)
    return dashboard_url(base_url, str(project_id))


def _update_dashboard(workspace, project_id, wanted: tuple[Panel, ...]) -> None:
    from evidently.sdk.models import DashboardModel, DashboardTabModel

    current = workspace.get_dashboard(project_id)
    existing = tuple(_from_evidently(p) for p in current.panels)
    merged = merge_panels(existing, wanted)
    if merged == existing:
        return
    kept = {p.title: p for p in current.panels}
    panels = [kept[p.title] if _from_evidently(kept.get(p.title)) == p else _to_evidently(p)
              for p in merged]
    workspace.save_dashboard(project_id, DashboardModel(
        tabs=[DashboardTabModel(title=TAB, panels=[p.id for p in panels])], panels=panels))


def _to_evidently(panel: Panel):
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import bar_plot_panel, line_plot_panel

    values = [PanelMetric(legend=s.legend, metric=s.metric, metric_labels=dict(s.labels))
              for s in panel.series]
    make = bar_plot_panel if panel.plot == "bar" else line_plot_panel
    return make(title=panel.title, values=values, size="full")


def _from_evidently(panel) -> Panel | None:
    if panel is None:
        return None
    series = tuple(Series(v.legend or "", v.metric.split(":")[-1], tuple(v.metric_labels.items()))
                   for v in panel.values)
    return Panel(panel.title, str(panel.plot_params.get("plot_type", "line")), series)
