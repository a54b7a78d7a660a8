"""pytest collects the pages of docs/ as doctests; the build's own files are not tests."""

collect_ignore = ["conf.py", "_ext", "_build", "gallery", "generated"]
