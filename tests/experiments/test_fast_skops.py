"""experiments/fast_skops.py: skops.io with its trusted-type lists kept from a real import.
Each import runs in a fresh interpreter (skops can be imported once per process), with its
own home folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What skops ended up trusting, and whether its lists were computed (a real module file) or
# kept (the module fast_skops made).
PROBE = """
import json, sys
from experiments.fast_skops import cache_file, name_lists, skops_io, TRUSTED_TYPES_MODULE
module = sys.modules[TRUSTED_TYPES_MODULE]
print(json.dumps({"lists": name_lists(module), "computed": hasattr(module, "__file__"),
                  "all_estimators_ran": "sklearn.utils._testing" in sys.modules,
                  "file": str(cache_file()), "loads": skops_io.loads(skops_io.dumps([1, 2.5]))}))
"""


def _import(home: Path) -> dict:
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The first import with an empty home folder: the real one."""
    home = tmp_path_factory.mktemp("home")
    return home, _import(home)


def test_the_first_import_computes_and_keeps_the_lists(first):
    home, real = first
    kept = Path(real["file"])
    assert real["computed"] and real["all_estimators_ran"]
    assert kept.parent == home / ".cache" / "mlops-platform" and json.loads(kept.read_text()) == real["lists"]
    assert kept.stat().st_mode & 0o777 == 0o600 and kept.parent.stat().st_mode & 0o777 == 0o700
    assert len(real["lists"]["SKLEARN_ESTIMATOR_TYPE_NAMES"]) > 100 and real["loads"] == [1, 2.5]


def test_a_later_import_trusts_exactly_the_same_types_without_computing_them(first):
    home, real = first

    again = _import(home)

    assert not again["computed"] and not again["all_estimators_ran"]
    assert again["lists"] == real["lists"] and again["loads"] == [1, 2.5]


@pytest.mark.parametrize("spoil", ["file writable by others", "folder writable by others",
                                   "a name outside the trusted libraries", "not JSON"])
def test_a_file_that_may_have_been_tampered_with_is_not_read(first, tmp_path, spoil):
    _, real = first
    kept = tmp_path / ".cache" / "mlops-platform" / Path(real["file"]).name
    kept.parent.mkdir(mode=0o700, parents=True)
    lists = json.loads(Path(real["file"]).read_text())
    if spoil == "a name outside the trusted libraries":
        lists["SKLEARN_ESTIMATOR_TYPE_NAMES"].append("os.system")
    kept.write_text("{" if spoil == "not JSON" else json.dumps(lists))
    kept.chmod(0o666 if spoil == "file writable by others" else 0o600)
    if spoil == "folder writable by others":
        kept.parent.chmod(0o777)

    again = _import(tmp_path)

    assert again["computed"] and again["lists"] == real["lists"]


def test_lists_skops_cannot_import_with_mean_the_real_import(first, tmp_path):
    """A kept file lacking a list skops imports (another skops's lists) is replaced."""
    _, real = first
    kept = tmp_path / ".cache" / "mlops-platform" / Path(real["file"]).name
    kept.parent.mkdir(mode=0o700, parents=True)
    lists = json.loads(Path(real["file"]).read_text())
    del lists["NUMPY_DTYPE_TYPE_NAMES"]
    kept.write_text(json.dumps(lists))
    kept.chmod(0o600)

    again = _import(tmp_path)

    assert again["computed"] and again["lists"] == real["lists"]
    assert json.loads(kept.read_text()) == real["lists"]


def test_no_module_of_ours_imports_skops_but_through_fast_skops():
    """Importing skops.io or any of its submodules directly runs the slow import first."""
    import ast

    direct = []
    for package in ("flows", "experiments", "registry", "monitoring", "infra", "serving"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "fast_skops.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                direct += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "skops"]
    assert direct == []
