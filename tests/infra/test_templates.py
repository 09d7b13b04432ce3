"""A new home's Prefect database starts as the migrated empty one `make install` made."""

import shutil
import sqlite3

import infra.templates as templates
from infra.local import local_platform
from infra.templates import build_prefect_template, seed_prefect_database


def test_a_home_without_a_database_gets_a_copy_of_the_template(tmp_path):
    template = tmp_path / "template.db"
    template.write_bytes(b"migrated")
    database = tmp_path / "home" / "prefect" / "prefect.db"

    seed_prefect_database(database, template)

    assert database.read_bytes() == b"migrated"
    assert template.read_bytes() == b"migrated"  # a copy: the home's writes stay its own


def test_an_existing_database_is_never_replaced(tmp_path):
    template = tmp_path / "template.db"
    template.write_bytes(b"migrated")
    database = tmp_path / "prefect.db"
    database.write_bytes(b"the user's runs")

    seed_prefect_database(database, template)

    assert database.read_bytes() == b"the user's runs"


def test_without_a_template_prefect_makes_its_database_itself(tmp_path):
    database = tmp_path / "prefect" / "prefect.db"

    seed_prefect_database(database, tmp_path / "missing.db")

    assert not database.exists()
    assert not any(database.parent.glob("*")) if database.parent.exists() else True


def test_the_local_prefect_service_seeds_its_home_from_the_installed_template(tmp_path, monkeypatch):
    """Given a template where install puts it, the local platform's Prefect service copies it
    into the new home just before Prefect starts; describing the platform wrote nothing."""
    folder = tmp_path / "templates"
    folder.mkdir()
    templates.prefect_template(folder).write_bytes(b"migrated")
    monkeypatch.setattr(templates, "TEMPLATES", folder)
    home = tmp_path / "home"
    platform = local_platform(home, "127.0.0.1", 5000, 4200)
    prefect = next(s for s in platform.services if s.name == "prefect")
    assert not home.exists()

    prefect.prepare()

    assert (home / "prefect" / "prefect.db").read_bytes() == b"migrated"


def test_the_template_is_a_database_prefect_migrated_to_its_head(tmp_path):
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
