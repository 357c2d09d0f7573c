"""Notebook 09 (melody conditioning, on nano-melody) run through JupyterLab's Run All in headless Chromium, as the
quickstart is: every cell runs without an error, the players load their clips (the two 4 s melodies, the six
clips played from them, the untransposed and the transposed clip), the figures render."""

import pytest
from test_jupyterlab import AUDIO_DURATIONS, IMAGES, open_and_run


@pytest.fixture(scope="module")
def notebook(lab, browser, shots):
    page = open_and_run(lab, browser, shots, "09_melody.ipynb", "melody", timeout=360)
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
