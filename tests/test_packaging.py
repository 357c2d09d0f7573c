"""pyproject.toml and environment.yml describe the same environment."""

import re

import tomllib
from helpers import ROOT


def normalise(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def test_environment_yml_lists_what_pyproject_lists():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in ("notebooks", "reference", "dev", "docs"):
        wanted |= set(project["optional-dependencies"][extra])
    env = (ROOT / "environment.yml").read_text().split("- pip:")[1]
    listed = {line.strip()[2:] for line in env.splitlines() if line.strip().startswith("- ")}
    listed.discard("-e .")
    assert {normalise(r) for r in listed} == {normalise(r) for r in wanted}


def test_browser_tests_skip_without_chromium_and_fail_under_ci(tmp_path):
    """No Chromium: ``make test`` skips the browser tests saying how to install one; with CI=true it fails."""
    import os
    import subprocess
    import sys

    def run(**env):
        e = {k: v for k, v in os.environ.items() if k != "CI"}
        e.update(MGLAB_CHROMIUM=str(tmp_path / "no-chromium"), **env)
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                               str(ROOT / "tests" / "browser")], capture_output=True, text=True, env=e, cwd=ROOT)
    plain = run()
    assert plain.returncode == 0 and "skipped" in plain.stdout and "apt-get install chromium" in plain.stdout, \
        plain.stdout[-2000:]
    ci = run(CI="true")
    assert ci.returncode != 0 and "a missing browser is a failure" in ci.stdout, ci.stdout[-2000:]
