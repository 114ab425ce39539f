import pathlib
import subprocess
import sys

import pytest

# The runner package, importable the way the server makes it (PYTHONPATH=runner).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import runner_client  # noqa: E402


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny random model, built once by the real CLI: folder, single file, its config folder."""
    root = tmp_path_factory.mktemp("tiny")
    folder, single = root / "tiny", root / "tiny.safetensors"
    subprocess.run([sys.executable, "-m", "easel_runner.tiny", "--out", str(folder), "--single-file", str(single),
                    "--seed", "0"], cwd=root, env=runner_client.runner_env(), check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    return {"folder": folder, "single_file": single, "config_dir": root / "tiny.config"}
