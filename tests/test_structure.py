"""The layering of docs/design.md, enforced: no package imports a private module of another,
or reads another's private names through an imported module (``F._x``), and no floor imports
a floor above it."""

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


def _module_name(path: Path) -> tuple[str, str]:
    """``(module, package)`` of a file: the package is what a relative import starts from."""
    module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    return (package if path.name == "__init__.py" else module), package


def _import_targets(tree, package):
    """Yield ``(node, target)`` for every import of a distcal module, relative ones resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("distcal"):
                yield node, target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("distcal"):
                    yield node, alias.name


def _imports(path: Path):
    module, package = _module_name(path)
    for node, target in _import_targets(ast.parse(path.read_text()), package):
        names = [alias.name for alias in node.names] if isinstance(node, ast.ImportFrom) else []
        yield module, target, names


def _attribute_reads(source: str, module: str, package: str):
    """Yield ``(module, owner, attribute)`` for each attribute read of an imported distcal name.

    ``owner`` is the full name of what the attribute is read from: ``F._curve`` after
    ``from ..metrics import functional as F`` reads ``_curve`` of ``distcal.metrics.functional``;
    ``distcal.metrics.functional._curve`` after ``import distcal.metrics.functional`` too.
    """
    tree = ast.parse(source)
    bound = {}  # local name -> the full name of the distcal object it is bound to
    for node, target in _import_targets(tree, package):
        for alias in node.names:
            if isinstance(node, ast.ImportFrom):
                bound[alias.asname or alias.name] = f"{target}.{alias.name}"
            elif alias.asname:
                bound[alias.asname] = alias.name
            else:  # import distcal.a.b binds distcal
                bound[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def full_name(node):
        if isinstance(node, ast.Name):
            return bound.get(node.id)
        if isinstance(node, ast.Attribute):
            owner = full_name(node.value)
            return None if owner is None else f"{owner}.{node.attr}"
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = full_name(node.value)
            if owner is not None:
                yield module, owner, node.attr


def _reads(path: Path):
    module, package = _module_name(path)
    yield from _attribute_reads(path.read_text(), module, package)


IMPORTS = [i for path in sorted(ROOT.rglob("*.py")) for i in _imports(path)]
READS = [r for path in sorted(ROOT.rglob("*.py")) for r in _reads(path)]


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


def _private_attribute(module, owner, attribute):
    """``F._x``, where ``F`` is (part of) another package: a private import by another road.

    The first private name of a chain is the one reported (``metrics._binned.f`` reads
    ``_binned`` of ``distcal.metrics``); dunders (``F.__name__``) are not private.
    """
    source, destination = _part(module), _part(owner)
    if source == destination or destination == "ground" or source == "ground":
        return None
    if not attribute.startswith("_") or (attribute.startswith("__") and attribute.endswith("__")):
        return None
    return f"{module} reads {owner}.{attribute}, private to distcal.{destination}"


def _upward_import(module, target, names):
    source, destination = _part(module), _part(target)
    if FLOORS[destination] <= FLOORS[source]:
        return None
    return f"{module} (floor {FLOORS[source]}) imports {target} (floor {FLOORS[destination]})"


@pytest.mark.parametrize("rule", [_private_import, _upward_import])
def test_the_layering_holds(rule):
    violations = [v for v in (rule(*i) for i in IMPORTS) if v]
    assert not violations, "\n".join(violations)


def test_the_attribute_reads_are_found():
    assert len(READS) > 5
    assert ("distcal.distill._artifact", "distcal.calibration.CalibrationRecipe",
            "from_dict") in READS  # fmt: skip


def test_no_package_reads_another_package_s_privates():
    violations = [v for v in (_private_attribute(*r) for r in READS) if v]
    assert not violations, "\n".join(violations)


PLANTED = """
import distcal.metrics.functional
import distcal.metrics.functional as G
from distcal import metrics
from ..metrics import functional as F
from ..metrics.functional import calibration_curve

F._calibration_curve(p, y)
G._calibration_error(p, y)
metrics.functional._top_label(p, y)
distcal.metrics.functional._check_inputs(p, y)
metrics._binned.binned_reliability(p, y)
calibration_curve._cache
F.calibration_curve(p, y)
F.__name__
"""


def test_the_attribute_rule_catches_a_planted_example():
    """Each private read of the planted module is caught, and only those."""
    reads = list(_attribute_reads(PLANTED, "distcal.plotting._planted", "distcal.plotting"))
    caught = sorted(
        v.split(" reads ")[1].split(",")[0] for r in reads if (v := _private_attribute(*r))
    )
    assert caught == [
        "distcal.metrics._binned",
        "distcal.metrics.functional._calibration_curve",
        "distcal.metrics.functional._calibration_error",
        "distcal.metrics.functional._check_inputs",
        "distcal.metrics.functional._top_label",
        "distcal.metrics.functional.calibration_curve._cache",
    ]
    # The same reads inside the package that owns them are its own business.
    inside = _attribute_reads(PLANTED, "distcal.metrics._planted", "distcal.metrics")
    assert not [r for r in inside if _private_attribute(*r)]


def test_the_rules_catch_violations():
    assert _private_import("distcal.distill._analysis", "distcal.calibration._model", ["f"])
    assert _private_import("distcal.distill._analysis", "distcal.calibration", ["_model"])
    assert not _private_import("distcal.distill._analysis", "distcal.metrics", ["ece"])
    assert _upward_import("distcal._files", "distcal.metrics", ["ece"])
    assert _upward_import("distcal.metrics._x", "distcal.plotting", ["f"])
    assert not _upward_import("distcal.experiment.pipeline", "distcal.distill", ["MDTTrainer"])


def _conversions(source: str):
    """Yield the line of each in-place conversion between numpy and torch or between devices.

    ``.numpy()``, ``.cpu()``, ``.cuda()``, ``torch.from_numpy(...)``, and ``.to(...)`` given a
    device (a string, a ``.device``, a ``device=``): what distcal/_device.py's helpers do.
    """
    for node in ast.walk(ast.parse(source)):
        is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        if is_call and _is_conversion(node):
            yield node.lineno


def _is_conversion(call: ast.Call) -> bool:
    name = call.func.attr
    if name in ("numpy", "cpu", "cuda"):
        return not call.args
    if name == "from_numpy":
        return getattr(call.func.value, "id", None) == "torch"
    if name != "to":
        return False
    return any(k.arg == "device" for k in call.keywords) or any(
        (isinstance(a, ast.Constant) and isinstance(a.value, str))
        or (isinstance(a, ast.Attribute) and a.attr == "device")
        or (isinstance(a, ast.Name) and "device" in a.id)
        for a in call.args
    )


#: The packages that convert only through distcal/_device.py, as its docstring says.
CONVERT_THROUGH_DEVICE = ("metrics", "plotting")


def test_metrics_and_plotting_convert_only_through_the_device_module():
    found = [
        f"{path.relative_to(ROOT.parent)}:{line}"
        for part in CONVERT_THROUGH_DEVICE
        for path in sorted((ROOT / part).rglob("*.py"))
        for line in _conversions(path.read_text())
    ]
    assert not found, "convert through distcal._device (as_tensor, to_numpy, like):\n" + (
        "\n".join(found)
    )


def test_the_conversion_rule_catches_a_planted_example():
    planted = """
x.numpy()
x.cpu()
x.cuda()
torch.from_numpy(a)
x.to("cpu", torch.float64)
x.to(y.device)
x.to(device=device)
x.to(torch.float64)
x.to(dtype=torch.float64)
as_tensor(a, device="cpu")
"""
    assert list(_conversions(planted)) == [2, 3, 4, 5, 6, 7, 8]
