"""A new home's databases start as the migrated empty ones `make install` made."""

import shutil
import sqlite3

import infra.templates as templates
from infra.local import local_platform
from infra.templates import build_mlflow_template, build_prefect_template, seed_database


def test_a_home_without_a_database_gets_a_copy_of_the_template(tmp_path):
    template = tmp_path / "template.db"
    template.write_bytes(b"migrated")
    database = tmp_path / "home" / "prefect" / "prefect.db"

    seed_database(database, template)

    assert database.read_bytes() == b"migrated"
    assert template.read_bytes() == b"migrated"  # a copy: the home's writes stay its own


def test_an_existing_database_is_never_replaced(tmp_path):
    template = tmp_path / "template.db"
    template.write_bytes(b"migrated")
    database = tmp_path / "prefect.db"
    database.write_bytes(b"the user's runs")

    seed_database(database, template)

    assert database.read_bytes() == b"the user's runs"


def test_without_a_template_prefect_makes_its_database_itself(tmp_path):
    database = tmp_path / "prefect" / "prefect.db"

    seed_database(database, tmp_path / "missing.db")

    assert not database.exists()
    assert not any(database.parent.glob("*")) if database.parent.exists() else True


def test_the_local_servers_seed_their_home_from_the_installed_templates(tmp_path, monkeypatch):
    """Given templates where install puts them, the local platform's MLflow and Prefect copy
    them into the new home just before they start; describing the platform wrote nothing."""
    folder = tmp_path / "templates"
    folder.mkdir()
    templates.prefect_template(folder).write_bytes(b"prefect migrated")
    templates.mlflow_template(folder).write_bytes(b"mlflow migrated")
    monkeypatch.setattr(templates, "TEMPLATES", folder)
    home = tmp_path / "home"
    platform = local_platform(home, "127.0.0.1", 5000, 4200)
    assert not home.exists()

    for service in platform.services:
        service.prepare()

    assert (home / "prefect" / "prefect.db").read_bytes() == b"prefect migrated"
    assert (home / "mlflow" / "mlflow.db").read_bytes() == b"mlflow migrated"


def test_the_prefect_template_is_a_database_prefect_migrated_to_its_head(tmp_path):
    """Prefect's own `database upgrade` made it: its alembic revision is set and its tables
    are there (a Prefect server then migrates nothing)."""
    template = build_prefect_template(tmp_path / "templates")
    assert [p.name for p in template.parent.iterdir()] == [template.name]  # one whole file
    copy = shutil.copyfile(template, tmp_path / "prefect.db")  # what a new home gets

    with sqlite3.connect(copy) as db:
        revisions = db.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert len(revisions) == 1
    assert {"flow_run", "deployment", "work_pool"} <= tables


def test_the_mlflow_template_is_migrated_and_holds_no_experiment(tmp_path):
    """MLflow's own `db upgrade` made it, and it holds no experiment: MLflow adds its Default
    experiment, with the home's own artifact location, when it starts on the copy."""
    template = build_mlflow_template(tmp_path / "templates")
    copy = shutil.copyfile(template, tmp_path / "mlflow.db")

    with sqlite3.connect(copy) as db:
        revisions = db.execute("SELECT version_num FROM alembic_version").fetchall()
        experiments = db.execute("SELECT count(*) FROM experiments").fetchone()[0]
    assert len(revisions) == 1
    assert experiments == 0
