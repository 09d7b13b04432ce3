"""skops.io in a tenth of its import time: import it from here.

    from experiments.fast_skops import skops_io

Importing skops.io builds the lists of type names it trusts by default
(`skops.io._trusted_types`): every scikit-learn estimator, found by importing every
scikit-learn module, and every numpy and scipy ufunc, each located by `pickle.whichmodule`,
which searches all of `sys.modules` for an object that does not name its module. In a process
that imported the platform's flows (~3,000 modules) that took 0.9-1.0 s of the 1.05 s import,
in every process that saves or loads a model; in a training the import runs beside the search,
and slowed it by 0.7-1.1 s.

Those lists are data. The first import in an environment is the real one, and keeps them in a
file keyed by the Python, numpy, scipy, scikit-learn and skops versions; later imports give
skops a module holding the same lists instead of computing them. If skops no longer imports
with it (a new version wanting something else), the real import runs.

The lists widen what skops trusts when it loads a file, so the file is read only when this
user owns it and its folder and nobody else may write either, and only names of the libraries
skops trusts by default are accepted; anything else is the real import. Writing it is best
effort: a read-only home only means the slow import.
"""

import json
import os
import re
import sys
import tempfile
import types
from importlib.metadata import version
from pathlib import Path

TRUSTED_TYPES_MODULE = "skops.io._trusted_types"
_NAME = re.compile(r"(builtins|numpy|scipy|sklearn)(\.[A-Za-z_][A-Za-z0-9_]*)+")


def cache_file() -> Path:
    """Where the lists are kept: the user's cache folder, one file per set of versions."""
    base = Path.home() / ".cache" / "mlops-platform"
    versions = "-".join(f"{name}{version(name)}" for name in ("numpy", "scipy", "scikit-learn", "skops"))
    return base / f"skops-trusted-py{sys.version_info[0]}.{sys.version_info[1]}-{versions}.json"


def name_lists(module: types.ModuleType) -> dict[str, list[str]]:
    """The module's lists of type names (`..._TYPE_NAMES`), as skops's other modules import them."""
    return {k: list(v) for k, v in vars(module).items()
            if k.endswith("_TYPE_NAMES") and isinstance(v, list)}


def _private(path: Path) -> bool:
    """Owned by this user, and writable by nobody else."""
    info = path.stat()
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def read_lists(path: Path) -> dict[str, list[str]] | None:
    """The lists kept at `path`, or None when they cannot be trusted or read."""
    try:
        if not (_private(path.parent) and _private(path)):
            return None
        lists = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    valid = isinstance(lists, dict) and lists and all(
        isinstance(k, str) and k.endswith("_TYPE_NAMES") and isinstance(v, list)
        and all(isinstance(n, str) and _NAME.fullmatch(n) for n in v)
        for k, v in lists.items())
    return lists if valid else None


def write_lists(path: Path, lists: dict[str, list[str]]) -> None:
    """Keep `lists` at `path`, readable and writable by this user only (atomically)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(path.parent):
            return
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".skops-", delete=False) as tmp:
            json.dump(lists, tmp)
        os.replace(tmp.name, path)  # NamedTemporaryFile makes it 0600
    except OSError:
        return


def _forget_skops() -> None:
    for name in [m for m in sys.modules if m == "skops" or m.startswith("skops.")]:
        del sys.modules[name]


def _import_with(lists: dict[str, list[str]]) -> types.ModuleType | None:
    """skops.io, its trusted-types module holding `lists`; None (nothing left imported) if
    skops does not import that way."""
    kept = types.ModuleType(TRUSTED_TYPES_MODULE, "Type names kept by experiments/fast_skops.py.")
    vars(kept).update(lists)
    sys.modules[TRUSTED_TYPES_MODULE] = kept
    try:
        import skops.io
    except ImportError:
        _forget_skops()
        return None
    return skops.io


def _import() -> types.ModuleType:
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    try:
        path = cache_file()
    except (RuntimeError, KeyError):  # no home folder (a service user): the real import
        path = None
    lists = read_lists(path) if path else None
    if lists is not None and (module := _import_with(lists)) is not None:
        return module
    import skops.io

    if path:
        write_lists(path, name_lists(sys.modules[TRUSTED_TYPES_MODULE]))
    return skops.io


skops_io = _import()
