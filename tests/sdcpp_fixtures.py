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


def ensure_checkpoint():
    """(checkpoint .safetensors, its config folder), made by the runner's own tool when missing."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "runner"), HF_HUB_OFFLINE="1")
    made = subprocess.run([str(RUNNER_PYTHON), "-m", "easel_runner.fullsize"], check=True, env=env, timeout=1800,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # The tool's last lines name the diffusers folder, the checkpoint and its config folder.
    _, checkpoint, config_dir = made.stderr.splitlines()[-3:]
    return pathlib.Path(checkpoint), pathlib.Path(config_dir)


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
