"""reports/index.html: every report folder linked, with its key metrics, figures and clips."""

import json

import numpy as np
import pytest
import soundfile as sf

from mglab.inspect import reports


def test_the_index_links_every_report_with_its_metrics(tmp_path):
    a, b = tmp_path / "02_guidance", tmp_path / "07_codec"
    a.mkdir(), b.mkdir()
    (a / "metrics.json").write_text(json.dumps({"kl_cond_null": 0.123456, "negative_changes_tokens": True,
                                                "summary": {"1.0": {}}, "files": ["kl.png"]}))
    (a / "02_guidance.html").write_text("<html></html>")
    (a / "kl.png").write_bytes(b"\x89PNG")
    (b / "metrics.json").write_text(json.dumps({"latent_is_sum": True}))
    sf.write(b / "first_1.wav", np.zeros(320, dtype=np.float32), 32000)
    (tmp_path / "empty").mkdir()
    page = reports.index(tmp_path).read_text()
    assert '<a href="02_guidance/02_guidance.html">02_guidance</a>' in page
    assert "kl_cond_null</td><td>0.1235" in page and "negative_changes_tokens" in page
    assert "summary" not in page                                   # tables stay in the report
    assert 'src="02_guidance/kl.png"' in page and '<audio controls preload="none" src="07_codec/first_1.wav">' in page
    assert "empty" not in page
    assert not list(tmp_path.glob(".index.html*"))                 # written under a temporary name, renamed


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is not a folder of reports"):
        reports.index(tmp_path / "nope")


def test_a_clip_card_embeds_its_spectrogram_and_its_audio():
    """The card plays offline: the WAV decoded back from its base64 is the clip (16-bit), the PNG is an image."""
    import base64
    import io
    import re

    import soundfile as sf

    from mglab.inspect.reports import clip_html, clips_html

    sr = 32000
    y = (0.5 * np.sin(2 * np.pi * 440 * np.arange(sr // 2) / sr)).astype(np.float32)   # [samples]
    card = clip_html(y, sr, title="a <440> Hz tone")
    assert "a &lt;440&gt; Hz tone" in card
    png = re.findall(r"data:image/png;base64,([^'\"]+)", card)
    wav = re.findall(r"data:audio/wav;base64,([^'\"]+)", card)
    assert len(png) == len(wav) == 1 and base64.b64decode(png[0])[:8] == b"\x89PNG\r\n\x1a\n"
    back, rate = sf.read(io.BytesIO(base64.b64decode(wav[0])), dtype="float32")
    assert rate == sr and back.shape == y.shape and np.abs(back - y).max() < 1e-4
    assert clips_html([("a", y, sr), ("b", y[None], sr)]).count("<audio controls") == 2
