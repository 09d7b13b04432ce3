"""A model version that ships code, as anyone who can write a version could log one: a
`skops` package in `code/` that, once imported, leaves a marker file."""

from pathlib import Path

PLANTED = """\
from pathlib import Path

Path({marker!r}).write_text("the model's code ran")
"""


def plant(folder: Path, marker: Path) -> Path:
    """A `skops` package whose import writes MARKER; the folder to pass as a code path."""
    package = folder / "skops"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLANTED.format(marker=str(marker)))
    return package


def log_planted(run_id: str, pipeline, metadata: dict, code: Path) -> str:
    """The pipeline logged as the platform logs it, plus CODE; return the model's URI."""
    import mlflow

    from experiments.pipelines import skops_trusted_types
    from experiments.tracking import pinned_requirements

    return mlflow.sklearn.log_model(
        pipeline, name="model", run_id=run_id, pip_requirements=pinned_requirements(),
        serialization_format="skops", skops_trusted_types=skops_trusted_types(pipeline),
        metadata=metadata, code_paths=[str(code)],
    ).model_uri
