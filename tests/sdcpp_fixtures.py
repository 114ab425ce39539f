"""Writes a single-file checkpoint as GGUF with the `gguf` package, the way community GGUF
Stable Diffusion files are made: the checkpoint's own tensor names, the weights as they are."""

import pathlib

import gguf
from safetensors import safe_open


def write_gguf(checkpoint, out):
    """`checkpoint` (.safetensors) as the GGUF file `out`, written once (a later call with
    the file present returns at once)."""
    out = pathlib.Path(out)
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
