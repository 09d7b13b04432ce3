"""Migrated, empty SQLite databases made once at install and copied into a new MLOPS_HOME.

At their first start on a new SQLite file Prefect and MLflow run every migration: 2.9 s of
CPU of the ~6 s a cold Prefect server took to answer, and ~1 s of MLflow's ~5 s. A migrated
empty database is the same in every home (no path, no key, no experiment in it: MLflow adds
its Default experiment, with the home's artifact location, when it starts), so `make install`
makes one per server version and a first `up` copies it; the server finds it at head and
migrates nothing. Without a template (an install that skipped it) the servers migrate as before.

    .venv/bin/python -m infra.templates    # what `make install` runs
"""

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from infra.services import child_environment, venv_bin

TEMPLATES = Path(sys.prefix) / "share" / "mlops" / "templates"


def prefect_template(folder: Path | None = None) -> Path:
    """Where the template for the installed Prefect lies (another version: another file)."""
    return (folder or TEMPLATES) / f"prefect-{version('prefect')}.db"


def mlflow_template(folder: Path | None = None) -> Path:
    return (folder or TEMPLATES) / f"mlflow-{version('mlflow')}.db"


def _build(target: Path, make: Callable[[Path], Path]) -> Path:
    """`make(tmp)` writes a database in a temporary folder beside `target`; moved in whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = make(Path(tmp))
        # Prefect writes ahead to a -wal file: fold it into the database, so that the one
        # file moved (and later copied) holds everything.
        connection = sqlite3.connect(built)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
        os.replace(built, target)
    return target


def _migrated_by_prefect(tmp: Path) -> Path:
    # The default SQLite database under PREFECT_HOME, whatever this shell points at.
    env = child_environment({"PREFECT_HOME": str(tmp)},
                            ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_PROFILE"))
    subprocess.run([venv_bin("prefect"), "server", "database", "upgrade", "-y"],
                   env=env, check=True, capture_output=True, cwd=tmp)
    return tmp / "prefect.db"


def _migrated_by_mlflow(tmp: Path) -> Path:
    database = tmp / "mlflow.db"
    subprocess.run([venv_bin("mlflow"), "db", "upgrade", f"sqlite:///{database}"],
                   env=child_environment({}, ("MLFLOW_TRACKING_URI",)), check=True,
                   capture_output=True, cwd=tmp)
    return database


def build_prefect_template(folder: Path | None = None) -> Path:
    """Prefect's own `server database upgrade` on a new SQLite file."""
    return _build(prefect_template(folder), _migrated_by_prefect)


def build_mlflow_template(folder: Path | None = None) -> Path:
    """MLflow's own `db upgrade` on a new SQLite file."""
    return _build(mlflow_template(folder), _migrated_by_mlflow)


def seed_database(database: Path, template: Path) -> None:
    """Copy the template to `database` if the home has none yet; an existing one is never
    touched, and without a template the server makes its database itself."""
    if database.exists() or not template.is_file():
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{database.name}.", dir=database.parent)
    os.close(fd)
    try:
        shutil.copyfile(template, tmp)
        os.replace(tmp, database)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def seed_prefect_database(database: Path) -> None:
    seed_database(database, prefect_template())


def seed_mlflow_database(database: Path) -> None:
    seed_database(database, mlflow_template())


if __name__ == "__main__":
    print(build_prefect_template())
    print(build_mlflow_template())
