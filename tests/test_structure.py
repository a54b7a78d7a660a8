"""The layering of docs/design.md, enforced: no package imports a private module of another,
and no floor imports a floor above it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "distcal"
# The floor of every top-level part of the package (docs/design.md, "Structure").
FLOORS = {
    "ground": 0,  # distcal/_*.py and distcal/exceptions.py
    "metrics": 1,
    "calibration": 1,
    "distill": 1,
    "plotting": 2,
    "experiment": 3,
    "cli": 3,
    "__init__": 3,
    "__main__": 3,  # python -m distcal: the command line
}


def _part(module: str) -> str:
    """'distcal.metrics._binning' -> 'metrics'; 'distcal._files' -> 'ground'."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    name = parts[1]
    if (name.startswith("_") and name not in ("__init__", "__main__")) or name in (
        "exceptions",
        "_version",
    ):
        return "ground"
    return name


def _imports(path: Path):
    module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    if path.name == "__init__.py":
        module = package
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("distcal"):
                names = [alias.name for alias in node.names]
                yield module, target, names
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("distcal"):
                    yield module, alias.name, []


IMPORTS = [i for path in sorted(ROOT.rglob("*.py")) for i in _imports(path)]


def test_the_imports_are_found():
    assert len(IMPORTS) > 100
    assert ("distcal.calibration._persistence", "distcal._files", ["read_tensors",
            "write_tensors"]) in IMPORTS  # fmt: skip


def _private_import(module, target, names):
    source, destination = _part(module), _part(target)
    if source == destination or destination == "ground":
        return None
    targets = [target] + [f"{target}.{name}" for name in names]
    private = [t for t in targets if any(p.startswith("_") for p in t.split(".")[2:])]
    return f"{module} imports {private}, private to distcal.{destination}" if private else None


def _upward_import(module, target, names):
    source, destination = _part(module), _part(target)
    if FLOORS[destination] <= FLOORS[source]:
        return None
    return f"{module} (floor {FLOORS[source]}) imports {target} (floor {FLOORS[destination]})"


@pytest.mark.parametrize("rule", [_private_import, _upward_import])
def test_the_layering_holds(rule):
    violations = [v for v in (rule(*i) for i in IMPORTS) if v]
    assert not violations, "\n".join(violations)


def test_the_rules_catch_violations():
    assert _private_import("distcal.distill._analysis", "distcal.calibration._model", ["f"])
    assert _private_import("distcal.distill._analysis", "distcal.calibration", ["_model"])
    assert not _private_import("distcal.distill._analysis", "distcal.metrics", ["ece"])
    assert _upward_import("distcal._files", "distcal.metrics", ["ece"])
    assert _upward_import("distcal.metrics._x", "distcal.plotting", ["f"])
    assert not _upward_import("distcal.experiment.pipeline", "distcal.distill", ["MDTTrainer"])
