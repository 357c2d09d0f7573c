"""Notebook 08 (masked decoding, on nano-magnet) run through JupyterLab's Run All in headless Chromium, as the
quickstart is: every cell runs without an error, the players load their clips (the masked 4 s clips, 198 frames,
the autoregressive ones, and the 6 s vamp source and result), the figures render."""

import pytest
from test_jupyterlab import AUDIO_DURATIONS, IMAGES, open_and_run


@pytest.fixture(scope="module")
def notebook(lab, browser, shots):
    page = open_and_run(lab, browser, shots, "08_masked_decoding.ipynb", "masked", timeout=360)
    yield page
    page.close()


def test_every_cell_runs_and_players_and_figures_load(notebook):
    errors = notebook.locator('.jp-Notebook [data-mime-type="application/vnd.jupyter.error"]')
    assert errors.count() == 0, errors.first.inner_text()[:2000]
    durations = notebook.evaluate(AUDIO_DURATIONS)
    assert len(durations) >= 8 and all(d > 0 for d in durations), durations
    assert sum(d == pytest.approx(3.96, abs=0.02) for d in durations) == 4, durations   # masked 4 s: 198 frames
    assert sum(d == pytest.approx(4.0, abs=0.005) for d in durations) == 3, durations   # autoregressive: 200
    assert sum(d == pytest.approx(6.0, abs=0.05) for d in durations) == 2, durations    # vamp source and result
    images = notebook.evaluate(IMAGES)
    assert len(images) >= 3 and all(done and w > 100 and h > 100 for done, w, h in images), images
