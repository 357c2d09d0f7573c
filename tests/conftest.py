from pathlib import Path

import pytest
from helpers import TINY, build_site


@pytest.fixture(scope="session", autouse=True)
def private_mglab_cache(tmp_path_factory):
    """Rewritten graphs go to a temporary cache, not the user's (notebook kernels inherit it)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MGLAB_CACHE", str(tmp_path_factory.mktemp("mglab-cache")))
    yield
    mp.undo()


def pytest_collection_modifyitems(items):
    """The tests of the documentation site run last: its gallery shows the notebooks the notebook tests ran."""
    items.sort(key=lambda item: bool({"docs_site", "site"} & set(getattr(item, "fixturenames", ()))))


@pytest.fixture(scope="session")
def docs_site() -> Path:
    """The site as ``make docs`` builds it: ``docs/_build/html``."""
    return build_site()


@pytest.fixture(scope="session")
def tiny_path() -> Path:
    return TINY


@pytest.fixture(scope="session", params=["merged", "split"])
def model(request):
    import mglab
    return mglab.load(TINY, decoder=request.param)


@pytest.fixture(scope="session")
def merged_model():
    import mglab
    return mglab.load(TINY, decoder="merged")


@pytest.fixture(scope="session")
def torch_model():
    """transformers' MusicgenForConditionalGeneration with the very weights the ONNX files were exported from."""
    import torch
    from transformers import MusicgenForConditionalGeneration

    torch.manual_seed(0)
    return MusicgenForConditionalGeneration.from_pretrained(TINY / "pytorch").eval()
