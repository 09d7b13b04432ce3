"""The code's shape, read from its syntax trees: short functions with few parameters, arrows
that run one way, and configuration read in one place."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "experiments", "registry", "monitoring", "infra", "serving")
MAX_LINES = 50
MAX_PARAMETERS = 7
# Only these may touch os.environ: the settings are read by pydantic-settings, a child's
# environment is prepared in one function, and the clients' own variables exported in one;
# the MLflow server takes in its own process the environment `mlflow server` gives its child.
# flows.warm_commands and flows.spare take on their command's environment (a fork's).
ENVIRONMENT_MODULES = {"infra.clients", "infra.services", "infra.mlflow_server",
                       "flows.warm_start", "flows.warm_commands", "flows.spare"}
# package -> packages it must never import
FORBIDDEN = {
    "experiments": {"flows", "registry", "monitoring", "serving", "infra"},
    "registry": {"flows", "monitoring", "serving", "infra"},
    "monitoring": {"flows", "serving", "infra"},
    "infra": {"flows", "experiments", "registry", "monitoring", "serving"},
    "serving": {"flows"},
}


def _modules() -> dict[str, ast.Module]:
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts): ast.parse(path.read_text())
        for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
    }


MODULES = _modules()


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] in PACKAGES}


def _functions():
    for module, tree in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield module, node


def _parameters(node: ast.FunctionDef) -> int:
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return len([n for n in names if n not in ("self", "cls")])


def test_the_packages_are_found():
    assert {m.split(".")[0] for m in MODULES} == set(PACKAGES)
    assert len(list(_functions())) > 200


def test_no_function_is_longer_than_fifty_lines():
    long = [f"{m}.{f.name}: {f.end_lineno - f.lineno + 1} lines" for m, f in _functions()
            if f.end_lineno - f.lineno + 1 > MAX_LINES]
    assert long == []


def test_no_function_takes_more_than_seven_parameters():
    wide = [f"{m}.{f.name}: {_parameters(f)}" for m, f in _functions() if _parameters(f) > MAX_PARAMETERS]
    assert wide == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_arrows_run_one_way(package):
    crossing = sorted(
        f"{module} imports {name}"
        for module, tree in MODULES.items() if module.split(".")[0] == package
        for name in _imports(tree) if name.split(".")[0] in FORBIDDEN[package]
    )
    assert crossing == []


def test_no_module_imports_itself_back():
    graph = {module: {n for n in _imports(tree) if n in MODULES} for module, tree in MODULES.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for following in graph.get(start, ()):
            if following == goal or (following not in seen and reaches(following, goal, seen | {following})):
                return True
        return False

    assert [m for m in graph if reaches(m, m, {m})] == []


def test_only_the_environment_modules_touch_os_environ():
    touching = {
        module for module, tree in MODULES.items() for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
        and isinstance(node.value, ast.Name) and node.value.id == "os"
    }
    assert touching == ENVIRONMENT_MODULES
