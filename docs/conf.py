"""Sphinx configuration for the wattwise docs (Markdown pages through myst-parser).

Built by ``tox -e docs`` with warnings as errors:
``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# the API reference (api.md) documents the checkout's source, whether or not it is installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

project = "wattwise"
author = "wattwise developers"
copyright = "2024-2026, wattwise developers"  # noqa: A001 - Sphinx's name
release = "0.1.0"

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
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

# API reference: autodoc imports the modules; the optional stacks are mocked, so the docs
# build needs only sphinx, myst-parser and numpy (wattwise's one dependency).
autodoc_mock_imports = [
    "torch", "lightning", "pytorch_lightning", "keras", "tensorflow", "jax", "pynvml",
    "codecarbon", "pyRAPL", "scipy", "matplotlib", "pandas", "sklearn", "tensorboard",
    "transformers", "accelerate",
]
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False


def setup(app: object) -> dict[str, bool]:
    """``.. wattwise-lazy-class:: module.Name DOC SIGNATURE_CLASS``: document a class that a
    module builds lazily for the installed framework (``wattwise.lightning.EnergyMonitor``, whose
    base class autodoc cannot mock), from the module's docstring constant ``DOC`` and the
    constructor of ``SIGNATURE_CLASS`` (annotations left out)."""
    import importlib
    import inspect

    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.ext.napoleon.docstring import GoogleDocstring
    from sphinx.util.docutils import SphinxDirective
    from sphinx.util.nodes import nested_parse_with_titles

    class LazyClass(SphinxDirective):
        required_arguments = 3

        def run(self) -> list[nodes.Node]:
            name, doc_attr, sig_class = self.arguments
            module_name, _, class_name = name.rpartition(".")
            module = importlib.import_module(module_name)
            sig = inspect.signature(getattr(module, sig_class).__init__)
            params = [p.replace(annotation=inspect.Parameter.empty)
                      for p in list(sig.parameters.values())[1:]]
            sig = sig.replace(parameters=params, return_annotation=inspect.Signature.empty)
            doc = inspect.cleandoc(getattr(module, doc_attr))
            body = str(GoogleDocstring(doc, self.config, what="class")).splitlines()
            lines = [f".. py:class:: {class_name}{sig}", f"   :module: {module_name}", ""]
            lines += [f"   {line}" if line else "" for line in body]
            node = nodes.container()
            nested_parse_with_titles(self.state, StringList(lines, source=self.get_source_info()[0]),
                                     node)
            return node.children

    app.add_directive("wattwise-lazy-class", LazyClass)  # type: ignore[attr-defined]
    return {"parallel_read_safe": True}
