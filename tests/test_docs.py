"""The documentation: every module's runnable Examples run (librosa style) and print what they give; every public
function and class has a docstring; the Sphinx site builds with warnings as errors (``make docs``)."""

import doctest
import importlib
import inspect
import pkgutil

import pytest
from helpers import DOCS_BUILD, ROOT

import mglab


def modules() -> list[str]:
    """Every module of the package (found by walking it: a new module is included without an edit here)."""
    return ["mglab"] + sorted(m.name for m in pkgutil.walk_packages(mglab.__path__, "mglab.")
                              if m.name != "mglab.__main__")           # runs the command line when imported


@pytest.mark.parametrize("name", modules())
def test_docstring_examples(name, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    monkeypatch.chdir(ROOT)                            # the examples name the bundled models by relative path
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def public(module) -> list[tuple[str, object]]:
    """The public functions and classes a module defines (not those it imports), and their public methods and
    properties."""
    found = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            found.append((f"{module.__name__}.{name}", obj))
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, property):
                    found.append((f"{module.__name__}.{name}.{attr}", member))
                elif inspect.isfunction(inner := getattr(member, "__func__", member)):
                    found.append((f"{module.__name__}.{name}.{attr}", inner))
    return found


def test_every_public_function_and_class_has_a_docstring():
    names = [n for m in modules() for n, _ in public(importlib.import_module(m))]
    assert "mglab.model.load" in names and "mglab.model.MusicGen.generate" in names      # the walk finds them
    missing = [n for m in modules() for n, obj in public(importlib.import_module(m)) if not (obj.__doc__ or "").strip()]
    assert not missing, "public names without a docstring: " + ", ".join(missing)


def test_the_flat_api_is_documented():
    for name in mglab.__all__:
        obj = getattr(mglab, name)
        assert isinstance(obj, str) or (obj.__doc__ or "").strip(), name


def test_the_readme_is_short_and_its_links_lead_somewhere():
    """At most 120 lines (the rest lives in docs/); every relative link names a file of the repository."""
    import re

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    assert "make demo" in text and "make test" in text
    links = re.findall(r"\]\(([^)#]+)", text)
    assert links and all((ROOT / link).exists() for link in links if "://" not in link), links


def test_make_docs_runs_what_the_tests_run():
    line = next(ln for ln in (ROOT / "Makefile").read_text().splitlines() if ln.startswith("DOCS_BUILD :="))
    assert line.split(":=")[1].split() == ["$(PY)", *DOCS_BUILD]


def test_the_site_builds(docs_site):
    """``make docs``' command: warnings are errors, cross-references resolved (nitpicky); every page the guide
    promises is there, with what moved into it from the README."""
    html = docs_site
    for page in ["index", "install", "quickstart", "correctness", "performance", "gallery/index", "api/index",
                 "api/flat", "api/generated/mglab.load", "api/generated/mglab.decoding.patterns",
                 *(f"guide/{p}" for p in ["loading", "generating", "hooks", "residual", "continuation", "stereo",
                                          "export", "longform", "sweeps", "evaluation", "models", "masked",
                                          "melody", "probes"]),
                 *(f"gallery/{p.stem}" for p in (ROOT / "notebooks").glob("*.ipynb"))]:
        assert (html / f"{page}.html").is_file(), page
    text = {p: (html / f"{p}.html").read_text() for p in ["performance", "correctness", "guide/models"]}
    # every benchmark table keeps its date and machine
    for date in ["2026-11-23, afternoon", "2026-11-23 23:00", "2026-11-23 evening"]:
        assert date in text["performance"], date
    assert text["performance"].count("2-core") >= 6
    assert "2026-11-30" in text["guide/models"] and "teacher-forced" in text["correctness"]


def test_the_site_works_offline_and_every_notebook_page_plays(docs_site):
    """Nothing in the built site is fetched from the network (script, stylesheet, image or audio sources), and
    every gallery page whose executed notebook has audio shows as many players."""
    import json
    import re

    html = docs_site
    for page in html.rglob("*.html"):
        text = page.read_text(errors="replace")
        remote = re.findall(r'<(?:script|link|img|audio|source)\b[^>]*(?:src|href)="(https?://[^"]+)"', text)
        assert not remote, (page.relative_to(html), remote[:3])
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        executed = ROOT / "docs" / "gallery" / nb.name
        if not executed.is_file():
            continue
        outputs = [o for c in json.loads(executed.read_text())["cells"] for o in c.get("outputs", [])]
        players = sum("".join(o.get("data", {}).get("text/html", "")).count("<audio") for o in outputs)
        shown = (html / "gallery" / f"{nb.stem}.html").read_text().count("<audio")
        assert shown >= players, (nb.name, players, shown)
