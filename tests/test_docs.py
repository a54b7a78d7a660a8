"""The documentation builds with warnings as errors, runs its gallery and documents every name.

The build runs the examples (sphinx-gallery) as the published documentation does, so a broken
figure or a docstring that Sphinx cannot parse fails the test suite, not the release. It takes
about a minute on two CPU cores, most of it running ``examples/``.
"""

import importlib
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = [
    "distcal",
    "distcal.calibration",
    "distcal.metrics",
    "distcal.metrics.functional",
    "distcal.plotting",
    "distcal.distill",
    "distcal.experiment",
    "distcal.exceptions",
]
DOCS_REQUIREMENTS = ["sphinx", "myst_parser", "numpydoc", "sphinx_gallery", "matplotlib"]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    for name in DOCS_REQUIREMENTS:
        pytest.importorskip(
            name, reason=f"building the docs needs {name}: pip install -e '.[docs]'"
        )
    # Build from a copy: the gallery and the API pages are generated into the source tree, and a
    # developer's own build in docs/ must not be read (or overwritten) by the test's.
    src = tmp_path_factory.mktemp("docs-src")
    generated = shutil.ignore_patterns(
        "_build", "gallery", "generated", "sg_execution_times.rst", "__pycache__"
    )
    shutil.copytree(ROOT / "docs", src / "docs", ignore=generated)
    shutil.copytree(ROOT / "examples", src / "examples", ignore=generated)
    out = src / "html"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    command = ["-W", "--keep-going", "-q", "-b", "html", str(src / "docs"), str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    return out, result


@pytest.fixture
def html(build):
    out, result = build
    if result.returncode != 0:
        pytest.skip("the docs build failed: see test_docs_build_without_warnings")
    return out


def _inventory(path):
    """The names in a Sphinx ``objects.inv``: four header lines, then zlib-compressed lines
    ``name domain:role priority uri display-name``."""
    data = path.read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = data.index(b"\n", header_end) + 1
    lines = zlib.decompress(data[header_end:]).decode().splitlines()
    return {line.split(" ", 2)[0]: line.split(" ", 2)[1] for line in lines}


def test_docs_build_without_warnings(build):
    html, result = build
    assert result.returncode == 0, (
        f"sphinx-build -W failed (exit {result.returncode}):\n"
        f"{result.stderr[-20000:]}\n{result.stdout[-5000:]}"
    )
    for page in (
        "index",
        "user_guide",
        "api",
        "results",
        "benchmarks",
        "distill",
        "design",
        "gallery/index",
    ):
        assert (html / f"{page}.html").is_file(), page


def test_every_public_name_is_documented(html):
    inventory = _inventory(html / "objects.inv")
    public = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            public[f"{module_name}.{name}"] = getattr(module, name)
    # An object re-exported by several public modules (distcal.TemperatureScaling is
    # distcal.calibration.TemperatureScaling) is documented once, under one of its names.
    documented = {id(obj) for full, obj in public.items() if full in inventory}
    missing = [full for full, obj in public.items() if id(obj) not in documented]
    assert not missing, f"public names without a page in docs/api.rst: {missing}"


def test_gallery_shows_output_and_figures(html):
    for example in sorted((ROOT / "examples").glob("*.py")):
        page = (html / "gallery" / f"{example.stem}.html").read_text()
        assert "sphx-glr-script-out" in page, example.name  # the captured stdout
        assert f"sphx_glr_{example.stem}_001.png" in page, example.name
        assert (html / "_images" / f"sphx_glr_{example.stem}_001.png").is_file(), example.name


def test_user_guide_shows_the_installed_command_line(html):
    page = (html / "user_guide.html").read_text()
    assert "usage: distcal" in page
    assert "usage: distcal demo" in page


def test_markdown_pages_link_code_names_to_the_api(html):
    # `TemperatureScaling` in a markdown page is plain code on GitHub and a link here.
    page = (html / "user_guide.html").read_text()
    assert 'href="generated/distcal.TemperatureScaling.html#distcal.TemperatureScaling"' in page
