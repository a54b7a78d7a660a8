"""Sphinx configuration of the distcal documentation.

Build it from the repository root with::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

Add ``-D plot_gallery=0`` to skip running the examples (the gallery pages then show the code
without its output and figures). ``tests/test_docs.py`` runs the same build, examples included.
"""

import sys
from pathlib import Path

import distcal

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

# -- Project -------------------------------------------------------------------------------------

project = "distcal"
author = "distcal developers"
copyright = "distcal developers"
release = distcal.__version__
version = ".".join(release.split(".")[:2])

# -- General -------------------------------------------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "distcal_docs",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    # The raw tables written by the benchmark scripts; docs/benchmarks.md holds them all.
    "benchmarks/*",
    "gallery/*.ipynb",
    "gallery/*.py",
    "gallery/*.zip",
    "gallery/*.md5",
    "gallery/*.json",
]
# The docs build offline (CI reaches package registries only), so no intersphinx: references to
# numpy, torch or scikit-learn render as plain text.
default_role = "literal"
pygments_style = "sphinx"

# -- MyST (the markdown pages) -------------------------------------------------------------------

# GitHub-style heading anchors, so links such as ``benchmarks.md#distillation-quality-...`` work
# both on GitHub and here.
myst_heading_anchors = 3

# -- API reference: autodoc, autosummary, numpydoc ------------------------------------------------

autosummary_generate = True
autodoc_typehints = "none"  # numpydoc's Parameters sections already state the types
autodoc_member_order = "groupwise"
# The class template (_templates/autosummary/class.rst) documents members, inherited ones
# included; distcal_docs skips those defined outside distcal (scikit-learn's get_params, torch's
# Module methods, ...), which are documented by their own projects.
numpydoc_show_class_members = False  # autodoc's ``members`` documents them instead
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- Examples gallery (sphinx-gallery) -----------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["gallery"],
    # Every script in examples/ is executed, not only plot_*.py.
    "filename_pattern": r"\.py$",
    # Scripts take their output folder as first argument; give them one under the build folder.
    "reset_argv": "distcal_docs.gallery_argv",
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("distcal",),
    "backreferences_dir": "generated/backreferences",
    "show_api_usage": False,
    "show_memory": False,
    "download_all_examples": False,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
}

# -- HTML ----------------------------------------------------------------------------------------

html_theme = "alabaster"
html_title = f"distcal {release}"
html_theme_options = {
    "description": "Calibration for networks trained on distilled data",
    "fixed_sidebar": True,
    "page_width": "1200px",
    "sidebar_width": "230px",
}
html_static_path = []
html_show_sourcelink = True
