import pathlib
import subprocess
import sys

import pytest

# The runner package, importable the way the server makes it (PYTHONPATH=runner).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import runner_client  # noqa: E402


def run_tiny_cli(root, *arguments):
    subprocess.run([sys.executable, "-m", "easel_runner.tiny", *map(str, arguments)], cwd=root,
                   env=runner_client.runner_env(), check=True, timeout=300, stdout=subprocess.DEVNULL)


def build_tiny(root, architecture):
    """A tiny random model, built by the real CLI: folder, single file, its config folder."""
    folder, single = root / "tiny", root / "tiny.safetensors"
    run_tiny_cli(root, "--arch", architecture, "--out", folder, "--single-file", single, "--seed", "0")
    return {"folder": folder, "single_file": single, "config_dir": root / "tiny.config"}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("tiny"), "sd1")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("tiny-sdxl"), "sdxl")


@pytest.fixture(scope="session")
def tiny_lora(tmp_path_factory):
    """Random kohya-format LoRAs made by the real CLI: for the tiny SD 1 model, and for SDXL."""
    root = tmp_path_factory.mktemp("loras")
    paths = {"sd1": root / "detail.safetensors", "sdxl": root / "xl.safetensors"}
    for architecture, path in paths.items():
        run_tiny_cli(root, "--lora", path, "--arch", architecture, "--seed", "1")
    return paths
