"""Sphinx configuration of the sb3-dst documentation (Markdown pages through MyST, API pages through autodoc).

Build it as CI does (tests/test_docs.py), warnings as errors::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import sb3_dst  # noqa: E402 (after the path set-up above; the package itself is installed)

project = "sb3-dst"
author = "sb3-dst developers"
copyright = "sb3-dst developers"
release = sb3_dst.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "result_tables",  # docs/_ext/result_tables.py: tables of measured numbers, written from the result files
    "keyword_table",  # docs/_ext/keyword_table.py: which class takes which keyword, from the classes
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# _generated holds the tables included by the pages; _ext the local extension
exclude_patterns = ["_build", "_generated", "_ext", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # "[text](page.md#a-heading)" links resolve to the heading's slug

# The algorithm classes are documented by their class docstrings (which list their keywords); the signature comes
# from DSTMixin.__init__. Members inherited from SB3 are left to SB3's documentation.
autoclass_content = "class"
autodoc_class_signature = "mixed"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}

html_theme = "sphinx_rtd_theme"
html_title = f"sb3-dst {release}"
html_show_sourcelink = False
