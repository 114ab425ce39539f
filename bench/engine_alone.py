"""The diffusers engine alone, in a bare process: no server, no protocol. Loaded through
the runner's own engine module, so threads, dtype, attention and warm-up are the
runner's; the benchmark compares the runner against this.

    python bench/engine_alone.py memory   --model PATH --size 256 --steps 4
    python bench/engine_alone.py unet-step --model PATH --size 512 --repeats 3

Prints one JSON object on stdout.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "runner"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.models.attention_processor import AttnProcessor  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from easel_runner import engine, messages, samplers  # noqa: E402

# CLIP's context length: the text embeddings a UNet step attends to.
_TOKENS = 77


def load(model_path):
    """The runner's engine with the model loaded as the server asks for it (threads 0:
    every core, dtype auto)."""
    path = pathlib.Path(model_path)
    model = {"id": path.stem, "path": str(path), "format": "diffusers" if path.is_dir() else "single_file"}
    diffusers_engine = engine.DiffusersEngine()
    diffusers_engine.load(messages.parse_load({"type": "load", "id": "load-1", "model": model}))
    return diffusers_engine


def memory(args):
    diffusers_engine = load(args.model)
    request = messages.parse_generate({
        "type": "generate", "id": "generate-1", "prompt": "a lighthouse at dusk", "negative_prompt": "",
        "width": args.size, "height": args.size, "steps": args.steps, "cfg_scale": 7.0, "sampler": "Euler a",
        "seeds": [1], "output_format": "png", "quality": 90}, samplers.available(), samplers.SCHEDULERS)
    _, engine_seconds = diffusers_engine.generate(request, lambda *progress: None, threading.Event())
    status = pathlib.Path("/proc/self/status").read_text()
    field = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("Vm")}
    return {"rss_bytes": field["VmRSS"], "peak_rss_bytes": field["VmHWM"], "engine_seconds": engine_seconds}


def unet_flops(unet, height, width):
    """FLOPs of one UNet call on a batch of 2 (guidance), counted on the meta device with
    the plain attention processor: the counter sees SDPA's fused kernel as 0 FLOPs."""
    with torch.device("meta"):
        meta_unet = UNet2DConditionModel.from_config(unet.config)
        latents = torch.empty(2, unet.config.in_channels, height // 8, width // 8)
        text = torch.empty(2, _TOKENS, unet.config.cross_attention_dim)
    meta_unet.set_attn_processor(AttnProcessor())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_unet(latents, 999, encoder_hidden_states=text)
    return counter.get_total_flops()


def unet_step(args):
    unet = load(args.model).pipeline.unet
    latents = torch.randn(2, unet.config.in_channels, args.size // 8, args.size // 8, dtype=unet.dtype)
    text = torch.randn(2, _TOKENS, unet.config.cross_attention_dim, dtype=unet.dtype)
    seconds = []
    with torch.no_grad():
        # The first call at a new size pays for kernel selection, as a request's first step would.
        for repeat in range(args.repeats + 1):
            started = time.perf_counter()
            unet(latents, 999, encoder_hidden_states=text)
            if repeat:
                seconds.append(time.perf_counter() - started)
    first_conv = unet.conv_in.weight
    return {"flops": unet_flops(unet, args.size, args.size), "seconds": seconds,
            "median_seconds": statistics.median(seconds), "threads": torch.get_num_threads(),
            "dtype": str(unet.dtype).removeprefix("torch."),
            "channels_last": first_conv.is_contiguous(memory_format=torch.channels_last)
            and not first_conv.is_contiguous(),
            "attention": sorted({type(p).__name__ for p in unet.attn_processors.values()}),
            "torch": torch.__version__}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=["memory", "unet-step"])
    parser.add_argument("--model", required=True, help="diffusers folder or single-file checkpoint")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = memory(args) if args.probe == "memory" else unet_step(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
