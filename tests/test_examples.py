"""The example scripts run, so the gallery cannot rot."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.filterwarnings("ignore::distcal.exceptions.DistcalWarning")
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    namespace = runpy.run_path(str(path))
    namespace["main"](tmp_path)
    out = capsys.readouterr().out
    assert "saved" in out
    assert list(tmp_path.glob("*.png"))
