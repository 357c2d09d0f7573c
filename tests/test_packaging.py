"""pyproject.toml and environment.yml describe the same environment."""

import re

import tomllib
from helpers import ROOT


def normalise(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def test_environment_yml_lists_what_pyproject_lists():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in ("notebooks", "reference", "dev"):
        wanted |= set(project["optional-dependencies"][extra])
    env = (ROOT / "environment.yml").read_text().split("- pip:")[1]
    listed = {line.strip()[2:] for line in env.splitlines() if line.strip().startswith("- ")}
    listed.discard("-e .")
    assert {normalise(r) for r in listed} == {normalise(r) for r in wanted}
