"""JupyterLab in a real browser: a ``jupyter lab`` server on 127.0.0.1 (free port, random token) and headless
Chromium driven by Playwright, with the system's Chromium (no browser download).

No Chromium found (``MGLAB_CHROMIUM`` or the usual paths): the tests skip and say how to install one; under CI
(``CI=true``) that is a failure. Screenshots go to ``reports/browser/``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import ROOT

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome",
                  "/usr/bin/google-chrome-stable", "/snap/bin/chromium")
# Chromium on a machine with no network: no background connections, no component updates, no sandbox as root
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
SHOTS = ROOT / "reports" / "browser"


def find_chromium() -> str | None:
    named = os.environ.get("MGLAB_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or next((p for p in CHROMIUM_PATHS if Path(p).is_file()), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        message = ("no Chromium found for the browser tests: install Debian's `chromium` package "
                   "(apt-get install chromium) or set MGLAB_CHROMIUM to a Chromium executable")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: a missing browser is a failure)")
        pytest.skip(message)
    pytest.importorskip("playwright", reason="pip install -e '.[dev]' installs playwright")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_root(root: Path) -> Path:
    """A throwaway copy of the notebooks beside a link to the repo's ``data/`` (the UI saves what it runs)."""
    (root / "notebooks").mkdir()
    for name in ("00_quickstart.ipynb", "08_masked_decoding.ipynb", "09_melody.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, root / "notebooks")
    (root / "data").symlink_to(ROOT / "data")
    settings = root / "settings"
    for plugin, values in {"notebook-extension/tracker": {"windowingMode": "none"},     # every cell in the DOM
                           "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}}.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return root


@pytest.fixture(scope="module")
def lab(chromium, tmp_path_factory):
    """``(url, token)`` of a running ``jupyter lab``; stopped by its process group at the end."""
    root = lab_root(tmp_path_factory.mktemp("lab"))
    port, token = free_port(), secrets.token_hex(16)
    log = open(root / "jupyter.log", "w")
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(root / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(root / "workspaces"))
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                             f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                             *(["--allow-root"] if os.geteuid() == 0 else [])],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not start: {(root / 'jupyter.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, token, root
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its kernels too), SIGKILL after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
