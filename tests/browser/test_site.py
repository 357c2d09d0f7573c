"""The documentation site (``make docs``) in headless Chromium, opened from ``docs/_build/html`` as files, as a
reader offline would: the index opens, the API page of ``mglab.load`` shows its parameters, a notebook page
plays its audio, and the site's search finds ``run_with_cache``."""

import inspect

import pytest
from helpers import build_site

import mglab

CLIPS = """async () => Promise.all([...document.querySelectorAll('article audio')].map(a => new Promise(done => {
  const loaded = () => done(a.duration);
  if (a.readyState >= 1) return loaded();
  a.addEventListener('loadedmetadata', loaded);
  a.addEventListener('error', () => done(-1));
  a.load();
  setTimeout(() => done(a.readyState >= 1 ? a.duration : 0), 15000);
})))"""

PLAY = """async (i) => {
  const a = document.querySelectorAll('article audio')[i];
  a.muted = true;
  await a.play();
  await new Promise(done => setTimeout(done, 1500));
  a.pause();
  return a.currentTime;
}"""


@pytest.fixture(scope="module")
def site(chromium):
    """``docs/_build/html``, built as ``make docs`` builds it (once a session)."""
    return build_site()


@pytest.fixture
def page(browser, site):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.set_default_timeout(30_000)
    yield page
    page.close()


def test_the_index_opens(page, site, shots):
    page.goto((site / "index.html").as_uri())
    assert page.title().startswith("mglab")
    links = page.locator(".bd-header .navbar-nav a").all_text_contents()          # the "More" menu's too
    for section in ("Install", "Quickstart", "User guide", "Performance", "Notebooks", "API reference"):
        assert any(section in link for link in links), links
    figure = page.locator("article img").first
    assert figure.evaluate("img => img.complete && img.naturalWidth > 100"), "the figure did not load"
    page.screenshot(path=str(shots / "docs_index.png"))


def test_the_api_page_of_load_shows_its_parameters(page, site, shots):
    page.goto((site / "api" / "generated" / "mglab.load.html").as_uri())
    signature = page.locator('[id="mglab.load"]').inner_text()
    documented = {n.strip() for entry in page.locator("dd.field-odd > dl > dt > strong").all_inner_texts()
                  for n in entry.split(",")}
    for name in inspect.signature(mglab.load).parameters:
        assert name in signature, name
        assert name in documented, (name, documented)
    assert "Parameters" in page.locator("article").inner_text()
    page.screenshot(path=str(shots / "docs_load.png"))


def test_a_notebook_page_plays_its_audio(page, site, shots):
    """The quickstart at its defaults: the generated clip is 4 s long, its continuation 6 s; the first plays."""
    page.goto((site / "gallery" / "00_quickstart.html").as_uri())
    durations = page.evaluate(CLIPS)
    assert any(d == pytest.approx(4.0, abs=0.05) for d in durations), durations
    assert any(d == pytest.approx(6.0, abs=0.05) for d in durations), durations
    assert page.evaluate(PLAY, 0) > 0.5                   # the player advanced: the clip plays
    assert page.locator("article img").count() >= 2        # and the figures are there
    page.screenshot(path=str(shots / "docs_notebook.png"))


def test_the_search_finds_run_with_cache(page, site, shots):
    """Typed into the search box as a reader would (Ctrl+K, the word, Enter): the results list the method."""
    page.goto((site / "index.html").as_uri())
    page.keyboard.press("Control+k")
    box = page.locator("input[name='q']:visible").first
    box.fill("run_with_cache")
    box.press("Enter")
    page.wait_for_url("**/search.html?q=run_with_cache*")
    results = page.locator("#search-results li a")
    results.first.wait_for()
    hrefs = [results.nth(i).get_attribute("href") for i in range(results.count())]
    assert any("mglab.MusicGen.html#mglab.MusicGen.run_with_cache" in h for h in hrefs), hrefs
    page.screenshot(path=str(shots / "docs_search.png"))
