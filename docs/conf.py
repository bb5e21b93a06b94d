"""Sphinx configuration for the wattwise docs (Markdown pages through myst-parser).

Built by ``tox -e docs`` with warnings as errors:
``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

project = "wattwise"
author = "wattwise developers"
copyright = "2024-2026, wattwise developers"  # noqa: A001 - Sphinx's name
release = "0.1.0"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
# dev/ holds contributor notes that are not part of the user documentation.
exclude_patterns = ["_build", "dev", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links resolve

html_theme = "alabaster"
html_title = "wattwise"
html_theme_options = {
    "description": "Joules per training sample, from real hardware counters",
    "fixed_sidebar": True,
}
