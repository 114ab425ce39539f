"""The full-size random SD1.5 checkpoint (written once per machine by the runner's
`easel_runner.fullsize`, into $EASEL_FIXTURE_CACHE or ~/.cache/easel/fixtures) and a GGUF
copy of it made with the `gguf` package, the way community GGUF files are made: the
checkpoint's own tensor names, the weights as they are."""

import os
import pathlib
import subprocess

import gguf
from safetensors import safe_open

from easel_server import REPO, RUNNER_PYTHON

NAME = "sd15-random"


def fixture_cache():
    configured = os.environ.get("EASEL_FIXTURE_CACHE")
    return pathlib.Path(configured) if configured else pathlib.Path.home() / ".cache" / "easel" / "fixtures"


def ensure_checkpoint():
    """(checkpoint .safetensors, its config folder), made by the runner's own tool when missing."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "runner"), HF_HUB_OFFLINE="1")
    subprocess.run([str(RUNNER_PYTHON), "-m", "easel_runner.fullsize", "--cache", str(fixture_cache())],
                   check=True, env=env, timeout=1800, stdout=subprocess.DEVNULL)
    return fixture_cache() / f"{NAME}.safetensors", fixture_cache() / f"{NAME}.config"


def ensure_gguf(checkpoint):
    """`checkpoint` as a GGUF file beside it, written once."""
    out = checkpoint.with_suffix(".gguf")
    if out.exists():
        return out
    partial = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), arch="sd1")
    with safe_open(str(checkpoint), framework="numpy") as tensors:
        for name in tensors.keys():
            writer.add_tensor(name, tensors.get_tensor(name))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    writer.close()
    partial.rename(out)
    return out
