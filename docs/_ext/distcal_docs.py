"""Small Sphinx helpers for the distcal documentation (loaded by ``docs/conf.py``)."""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import shlex
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

_GALLERY_LABEL = re.compile(r"^\.\. _sphx_glr_\S+:\n\n", re.MULTILINE)


def gallery_argv(gallery_conf, script_vars):
    """Return the arguments an example script runs with: a scratch output folder.

    The examples take the folder for their figures as first argument (``python
    examples/calibrate_logits.py OUTPUT``). sphinx-gallery captures the figures left open, so
    the files the scripts write go to a scratch folder under ``docs/_build``.
    """
    output = Path(gallery_conf["src_dir"]) / "_build" / "gallery-output"
    return [str(output)]


def _defining_module(obj) -> str | None:
    if isinstance(obj, property):
        obj = obj.fget
    obj = inspect.unwrap(getattr(obj, "__func__", obj))
    owner = getattr(obj, "__objclass__", None)  # methods and attributes of built-in types
    if owner is not None:
        return owner.__module__
    return getattr(obj, "__module__", None)


def _skip_member(app, what, name, obj, skip, options):
    """Skip class members defined outside distcal.

    Inherited members defined in distcal (``BaseLogitCalibrator.predict_proba`` on
    ``TemperatureScaling``) are documented on each subclass. Those of scikit-learn, torch, abc
    and the built-in exceptions are documented by their projects; scikit-learn's docstrings
    cross-reference labels of its own user guide, which do not exist here.
    """
    if what not in ("class", "exception"):
        return None
    module = _defining_module(obj)
    if module is not None and module.split(".")[0] != "distcal":
        return True
    return None


def _title_gallery_page(app, docname, source):
    """Make the first paragraph of an example's docstring its page title.

    The example scripts open with a one-line summary, as a docstring should, rather than a
    reStructuredText title; sphinx-gallery takes that line as the example's title for the
    thumbnails but leaves the page without a title. Underlining it gives the page its title.
    """
    if not docname.startswith("gallery/") or docname.endswith(("/index", "sg_execution_times")):
        return
    text = source[0]
    match = _GALLERY_LABEL.search(text)
    if match is None:
        return
    start = match.end()
    end = text.find("\n\n", start)
    paragraph = text[start:end]
    lines = paragraph.splitlines()
    if len(lines) > 1 and set(lines[1].strip()) <= set("=-~^\"'`#*+<>_:.") and lines[1].strip():
        return  # already a title
    title = " ".join(line.strip() for line in lines).rstrip(".")
    source[0] = text[:start] + title + "\n" + "=" * len(title) + text[end:]


_LINKABLE = {"class", "exception", "function", "data", "module"}


def _link_code_names(app, doctree, docname):
    """Link inline code that names a documented object, in the markdown pages.

    The pages in ``docs/*.md`` are read on GitHub too, where MyST roles such as
    ``{class}`TemperatureScaling``` show as raw text. They write names as plain inline code
    instead, and this links each one that names a class, function, exception, data or module
    of the API reference: a full name (``distcal.metrics``), or the short name of a class,
    function, exception or data that is unique, or whose shortest public path is
    (``brier_score`` is ``distcal.metrics.brier_score``, not the one in ``functional``).
    """
    if Path(app.env.doc2path(docname)).suffix != ".md" or not hasattr(
        app.builder, "get_relative_uri"
    ):
        return
    objects = {
        name: entry
        for name, entry in app.env.get_domain("py").objects.items()
        if entry.objtype in _LINKABLE and not entry.aliased
    }
    by_short_name = {}
    for name in objects:
        by_short_name.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    for literal in list(doctree.findall(nodes.literal)):
        if any(isinstance(a, (nodes.reference, nodes.title)) for a in _ancestors(literal)):
            continue
        name = _resolve(literal.astext(), objects, by_short_name)
        if name is None:
            continue
        entry = objects[name]
        uri = app.builder.get_relative_uri(docname, entry.docname) + "#" + entry.node_id
        reference = nodes.reference("", "", internal=True, refuri=uri, reftitle=name)
        literal.replace_self(reference)
        reference.append(literal)


def _ancestors(node):
    while node.parent is not None:
        node = node.parent
        yield node


def _resolve(text, objects, by_short_name):
    if text in objects:
        # A module only by its dotted name: `distcal` alone is as often the command.
        return text if "." in text or objects[text].objtype != "module" else None
    candidates = [n for n in by_short_name.get(text, []) if objects[n].objtype != "module"]
    if not candidates:
        return None
    depth = min(name.count(".") for name in candidates)
    shallowest = [name for name in candidates if name.count(".") == depth]
    return shallowest[0] if len(shallowest) == 1 else None


class DistcalOutput(SphinxDirective):
    """Show the help of the installed ``distcal`` command, produced at build time.

    Each line of the content is a ``distcal ... --help`` command line; the directive runs it in
    this process and shows the command and its output, so the pages never disagree with the
    command line they document. On GitHub the block reads as the command itself. Only help
    is shown: a real run would take minutes.
    """

    has_content = True

    def run(self):
        from distcal.cli import main

        text = []
        for line in self.content:
            if not line.strip():
                continue
            args = shlex.split(line)
            if args[0] != "distcal" or args[-1] not in ("-h", "--help"):
                raise self.error(f"expected 'distcal ... --help', got {line!r}")
            out = io.StringIO()
            with _columns(90), contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main(args[1:])
            text.append(f"$ {line.strip()}\n{out.getvalue().rstrip()}")
        block = nodes.literal_block("\n\n".join(text), "\n\n".join(text))
        block["language"] = "console"
        return [block]


@contextlib.contextmanager
def _columns(width):
    # argparse wraps its help to the terminal's width, read from $COLUMNS first.
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def setup(app):
    app.add_directive("distcal-output", DistcalOutput)
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("source-read", _title_gallery_page)
    app.connect("doctree-resolved", _link_code_names)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
