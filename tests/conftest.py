import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from easel_server import EaselServer, make_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A models folder with the tiny model as a diffusers folder and as a single file."""
    models = tmp_path_factory.mktemp("models")
    make_tiny_model(models / "tiny", single_file=models / "tiny-single.safetensors")
    return models


@pytest.fixture(scope="session")
def server(tiny_models, tmp_path_factory):
    """One server shared by the tests that do not break it."""
    easel = EaselServer(tmp_path_factory.mktemp("server"), tiny_models, "--default-model", "tiny").start()
    try:
        yield easel.wait_ready()
    finally:
        easel.stop()
