"""Notebook 09 (melody conditioning, on nano-melody) run through JupyterLab's Run All in headless Chromium, as the
quickstart is: every cell runs without an error, the players load their clips (the two 4 s melodies, the six
clips played from them, the untransposed and the transposed clip), the figures render."""

import pytest
from test_jupyterlab import AUDIO_DURATIONS, IMAGES, kernel_ready, run_all


@pytest.fixture(scope="module")
def notebook(lab, browser, shots):
    url, token, _ = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(f"{url}/lab?token={token}")
    page.locator(".jp-LauncherCard", has_text="Python 3").first.wait_for(timeout=90_000)
    page.locator(".jp-DirListing-item", has_text="notebooks").dblclick()
    page.locator(".jp-DirListing-item", has_text="09_melody.ipynb").dblclick()
    page.wait_for_selector(".jp-Notebook .jp-CodeCell")
    try:
        kernel_ready(page)
        run_all(page, timeout=360)
    except AssertionError:
        page.screenshot(path=str(shots / "melody_stuck.png"))
        raise
    page.screenshot(path=str(shots / "melody.png"))
    yield page
    page.close()


def test_every_cell_runs_and_players_and_figures_load(notebook):
    errors = notebook.locator('.jp-Notebook [data-mime-type="application/vnd.jupyter.error"]')
    assert errors.count() == 0, errors.first.inner_text()[:2000]
    durations = notebook.evaluate(AUDIO_DURATIONS)
    assert len(durations) == 10, durations                    # 2 melodies, 6 clips, 2 for the transposition
    assert all(d == pytest.approx(4.0, abs=0.005) for d in durations), durations
    images = notebook.evaluate(IMAGES)
    assert len(images) >= 3 and all(done and w > 100 and h > 100 for done, w, h in images), images
