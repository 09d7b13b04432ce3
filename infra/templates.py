"""A migrated, empty Prefect database made once at install and copied into a new MLOPS_HOME.

At its first start on a new SQLite file Prefect runs every alembic migration: 2.9 s of CPU
of the ~6 s a cold Prefect server took to answer. The migrated empty database is the same in
every home (no path, no key in it), so `make install` makes it once per Prefect version and a
first `up` copies it; Prefect finds it at head and migrates nothing. Without the template
(an install that skipped it) Prefect migrates as before.

    .venv/bin/python -m infra.templates    # what `make install` runs
"""

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

from infra.services import child_environment, venv_bin

TEMPLATES = Path(sys.prefix) / "share" / "mlops" / "templates"


def prefect_template(folder: Path | None = None) -> Path:
    """Where the template for the installed Prefect lies (another version: another file)."""
    return (folder or TEMPLATES) / f"prefect-{version('prefect')}.db"


def build_prefect_template(folder: Path | None = None) -> Path:
    """Migrate a new SQLite database with Prefect's own command, then move it in place whole."""
    target = prefect_template(folder)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        # The default SQLite database under PREFECT_HOME, whatever this shell points at.
        env = child_environment({"PREFECT_HOME": tmp},
                                ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_PROFILE"))
        subprocess.run([venv_bin("prefect"), "server", "database", "upgrade", "-y"],
                       env=env, check=True, capture_output=True, cwd=tmp)
        built = Path(tmp) / "prefect.db"
        # Prefect writes ahead to a -wal file: fold it into the database, so that the one
        # file moved (and later copied) holds everything.
        connection = sqlite3.connect(built)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
        os.replace(built, target)
    return target


def seed_prefect_database(database: Path, template: Path | None = None) -> None:
    """Copy the template to `database` if the home has none yet; an existing one is never
    touched, and without a template Prefect makes its database itself."""
    template = template or prefect_template()
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


if __name__ == "__main__":
    print(build_prefect_template())
