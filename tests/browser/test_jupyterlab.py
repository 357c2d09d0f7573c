"""The quickstart notebook run through JupyterLab's own menu in headless Chromium, as a person would: every cell
runs without an error, the audio players load a clip, the figures render; then the explorer's sliders are
dragged with the mouse and what they show changes."""

import re
import time

import pytest

PlaywrightTimeout = pytest.importorskip("playwright.sync_api").TimeoutError

ALL_DONE = """() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
  const errors = document.querySelectorAll('.jp-Notebook [data-mime-type="application/vnd.jupyter.error"]');
  return errors.length > 0 || (prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent)));
}"""

AUDIO_DURATIONS = """async () => {
  const players = [...document.querySelectorAll('.jp-Notebook audio')];
  return Promise.all(players.map(a => new Promise(done => {
    if (a.readyState >= 1) return done(a.duration);
    a.addEventListener('loadedmetadata', () => done(a.duration));
    a.addEventListener('error', () => done(-1));
    a.load();
    setTimeout(() => done(a.readyState >= 1 ? a.duration : 0), 15000);
  })));
}"""

IMAGES = """() => [...document.querySelectorAll('.jp-Notebook .jp-RenderedImage img')]
                 .map(i => [i.complete, i.naturalWidth, i.naturalHeight])"""


def answer_kernel_dialog(page) -> bool:
    """JupyterLab asks "Select Kernel" when its kernel list came after the notebook opened: answer it as a
    person would (the preselected kernel). True if it was there."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    if not (dialog.count() and dialog.is_visible()):
        return False
    try:
        dialog.locator("button.jp-mod-accept").click(timeout=3000)
    except PlaywrightTimeout:                                  # it closed by itself meanwhile
        pass
    return True


def kernel_ready(page, quiet: float = 3.0, timeout: float = 90) -> None:
    """Wait until the notebook's kernel is idle and no dialog has come for ``quiet`` seconds."""
    deadline, calm_since = time.monotonic() + timeout, None
    while True:
        idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() > 0
        if answer_kernel_dialog(page) or not idle:
            calm_since = None
        elif calm_since is None:
            calm_since = time.monotonic()
        elif time.monotonic() - calm_since >= quiet:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the notebook's kernel did not become ready")
        page.wait_for_timeout(250)


def run_all(page, timeout: float = 240) -> None:
    """Run > Run All Cells, then wait until every code cell has its execution number or one shows an error
    (a kernel dialog meanwhile: answered, and the cells run again)."""
    def click_run_all():
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    click_run_all()
    deadline = time.monotonic() + timeout
    while not page.evaluate(ALL_DONE):
        if answer_kernel_dialog(page):
            kernel_ready(page)
            click_run_all()
        if time.monotonic() > deadline:
            raise AssertionError("the cells did not all run: " + " ".join(
                page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()))
        page.wait_for_timeout(500)


def open_and_run(lab, browser, shots, name: str, shot: str, timeout: float = 240):
    """A page with ``notebooks/<name>`` opened in JupyterLab and run through Run All (``shot``.png saved, or
    ``shot``_stuck.png when it does not finish)."""
    url, token, _ = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(f"{url}/lab?token={token}")
    page.locator(".jp-LauncherCard", has_text="Python 3").first.wait_for(timeout=90_000)   # kernels listed
    page.locator(".jp-DirListing-item", has_text="notebooks").dblclick()
    page.locator(".jp-DirListing-item", has_text=name).dblclick()
    page.wait_for_selector(".jp-Notebook .jp-CodeCell")
    try:
        kernel_ready(page)
        run_all(page, timeout=timeout)
    except AssertionError:
        page.screenshot(path=str(shots / f"{shot}_stuck.png"))
        raise
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    page.screenshot(path=str(shots / f"{shot}.png"))
    return page


@pytest.fixture(scope="module")
def notebook(lab, browser, shots):
    page = open_and_run(lab, browser, shots, "00_quickstart.ipynb", "quickstart")
    yield page
    page.close()


def test_every_cell_runs_without_an_error(notebook):
    errors = notebook.locator('.jp-Notebook [data-mime-type="application/vnd.jupyter.error"]')
    assert errors.count() == 0, errors.first.inner_text()[:2000]
    prompts = notebook.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()
    numbers = [int(re.search(r"\[(\d+)\]", p).group(1)) for p in prompts]
    assert numbers == list(range(1, len(numbers) + 1)), prompts          # in order, each once


def test_audio_players_load_a_clip(notebook):
    durations = notebook.evaluate(AUDIO_DURATIONS)
    # the generated clip (4 s by the notebook's defaults) and its continuation (6 s); the explorer at step 0
    # has no finished frame to play yet
    assert len(durations) >= 2 and all(d > 0 for d in durations), durations
    assert any(d == pytest.approx(4.0, abs=0.05) for d in durations), durations
    assert any(d == pytest.approx(6.0, abs=0.05) for d in durations), durations


def test_figures_render(notebook):
    images = notebook.evaluate(IMAGES)
    assert len(images) >= 3, images                    # waveform/spectrogram/codes, delayed tokens, explorer
    assert all(done and w > 100 and h > 100 for done, w, h in images), images


def slider(page, label: str):
    return page.locator(".widget-hslider", has=page.locator(".widget-label", has_text=re.compile(f"^{label}$")))


def drag(page, control, fraction: float) -> None:
    """Press the slider's handle and move it to ``fraction`` of its track with the mouse, then release."""
    control.scroll_into_view_if_needed()
    track = control.locator(".noUi-target").bounding_box()
    handle = control.locator(".noUi-handle").bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + fraction * track["width"], track["y"] + track["height"] / 2, steps=12)
    page.mouse.up()


def shown(page) -> dict:
    table = page.locator("table.mglab-top-tokens")
    rows = table.locator("tr").all_inner_texts()[1:]                          # one per codebook
    return {"step": table.get_attribute("data-step"), "top": [r.split("\t")[-1] for r in rows],
            "figure": page.locator(".widget-output .jp-RenderedImage img").first.get_attribute("src"),
            "status": page.locator(".widget-label-basic, .widget-label").filter(
                has_text="generated:").first.inner_text()}


def test_the_explorer_follows_its_sliders(notebook, shots):
    page = notebook
    explorer = page.locator(".widget-vbox", has=page.locator("table.mglab-top-tokens")).last
    explorer.scroll_into_view_if_needed()
    before = shown(page)
    assert before["step"] == "0" and before["status"].startswith("generated: guidance 3,")
    explorer.screenshot(path=str(shots / "explorer_step0.png"))

    step = slider(page, "step")
    drag(page, step, 0.6)
    page.wait_for_function("() => document.querySelector('table.mglab-top-tokens').dataset.step !== '0'")
    page.wait_for_function("(src) => document.querySelector('.widget-output .jp-RenderedImage img')?.src"
                           " && document.querySelector('.widget-output .jp-RenderedImage img').src !== src",
                           arg=before["figure"])
    moved = shown(page)
    readout = step.locator(".widget-readout").inner_text().strip()
    assert moved["step"] == readout and int(readout) > 20, (moved["step"], readout)
    assert moved["figure"] != before["figure"]                               # the token matrix redrawn
    assert moved["top"] != before["top"]                                     # other top tokens per codebook
    explorer.screenshot(path=str(shots / "explorer_step_moved.png"))

    guidance = slider(page, "guidance")
    drag(page, guidance, 0.1)                                                # 0..10: about 1
    page.wait_for_function("() => [...document.querySelectorAll('.widget-label')].some("
                           "l => l.textContent.startsWith('generated:') && !l.textContent.startsWith("
                           "'generated: guidance 3,'))", timeout=120_000)
    page.wait_for_function("(src) => document.querySelector('.widget-output .jp-RenderedImage img')?.src"
                           " && document.querySelector('.widget-output .jp-RenderedImage img').src !== src",
                           arg=moved["figure"])
    after = shown(page)
    assert after["figure"] != moved["figure"] and after["step"] == moved["step"]   # the new run, same step
    value = float(guidance.locator(".widget-readout").inner_text())
    assert value != 3.0 and after["status"].startswith(f"generated: guidance {value:g},"), after["status"]
    explorer.screenshot(path=str(shots / "explorer_guidance.png"))
