"""Sphinx configuration of mglab's documentation.

``make docs`` builds it: ``python -m sphinx -W --keep-going -n -b html docs docs/_build/html`` (warnings are
errors, every cross-reference must resolve). Before Sphinx reads anything, ``_ext/mglab_docs.py`` writes the
flat API's list (``api/flat.rst``, from ``mglab.__all__``) and copies the executed notebooks into ``gallery/``
(see ``gallery/index.md``): both are generated, ignored by git.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]        # this checkout's mglab, not an installed copy

import mglab_docs  # noqa: E402

import mglab  # noqa: E402

project = "mglab"
author = "mglab contributors"
copyright = "mglab contributors, MIT licence"
version = release = mglab.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_nb",
    "mglab_docs",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]
templates_path = ["_templates"]

# The API reference: one page per name of the flat API (``mglab.load``, ...) and one per module, found by
# walking the package (autosummary's ``:recursive:``), so a new module needs no edit here.
autosummary_generate = True
autosummary_imported_members = False
autosummary_context = {"flat_names": mglab_docs.flat_by_module(), "defined_in": mglab_docs.defined_in(),
                       "module_data": mglab_docs.module_data()}
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
autosummary_mock_imports = ["mglab.__main__"]      # importing it runs the command line; it has nothing to document
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()

# No intersphinx: the build runs offline (CI reaches only the package registries), so other projects' names in
# signatures (numpy.ndarray, pathlib.Path, ...) are left unlinked rather than reported; every reference to
# mglab's own names must resolve. Listed: the libraries mglab's signatures use (numpy, pathlib, inspect today).
EXTERNAL = r"(numpy|pathlib|inspect|collections|typing|onnx|onnxruntime|torch|pandas|distributed|matplotlib)\..*"
nitpick_ignore_regex = [("py:class", EXTERNAL), ("py:obj", EXTERNAL)]

# myst-nb renders the notebooks as they were executed (by the test suite or ``make report``): never here.
nb_execution_mode = "off"
nb_ipywidgets_js = {}                      # no CDN scripts: the site works offline (widgets are not drawn)
nb_output_stderr = "remove"                # warnings printed during the run (with its machine's paths)
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

html_theme = "pydata_sphinx_theme"
html_title = "mglab"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "header_links_before_dropdown": 5,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {page: [] for page in ("index", "install", "quickstart", "correctness", "performance")}
html_copy_source = False
html_show_sourcelink = False

