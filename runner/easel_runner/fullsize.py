"""Writes a random-weight model with Stable Diffusion 1.5's real architecture, for benchmarks
and for engines that need the full-size tensor layout (stable-diffusion.cpp infers the
model from tensor names and shapes).

    python -m easel_runner.fullsize [--cache DIR]

Speed and memory do not depend on weight values, so this stands in for a real SD1.5
checkpoint without downloading one. Into DIR (default: $EASEL_FIXTURE_CACHE, else
~/.cache/easel/fixtures) it writes, once:

    sd15-random/                 diffusers folder (f16 weights; load with torch_dtype=float32)
    sd15-random.safetensors      the same weights as one LDM-layout f16 checkpoint (~2 GB)
    sd15-random.config/          its diffusers config folder (what the server passes as config_dir)

A later run finds them and returns at once.
"""

import argparse
import os
import pathlib
import sys

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from . import tiny
from .tokenizer import pipeline_tokenizers

NAME = "sd15-random"
README = """\
Random-weight model with Stable Diffusion 1.5's architecture, made by `python -m easel_runner.fullsize`.

Every image it generates is noise. It measures speed and memory as a real SD1.5 checkpoint would.
"""
_CONFIGS = pathlib.Path(__file__).parent / "configs" / "sd1"
# Written last: its presence means every file before it is complete.
_COMPLETE = ".complete"


def default_cache():
    configured = os.environ.get("EASEL_FIXTURE_CACHE")
    return pathlib.Path(configured) if configured else pathlib.Path.home() / ".cache" / "easel" / "fixtures"


class Fixture:
    def __init__(self, cache):
        self.cache = pathlib.Path(cache)
        self.folder = self.cache / NAME
        self.single_file = self.cache / f"{NAME}.safetensors"
        self.config_dir = tiny.config_dir_for(self.single_file)

    @property
    def complete(self):
        return (self.cache / _COMPLETE).exists()


def build(seed=0):
    torch.manual_seed(seed)
    models = {
        "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(_CONFIGS / "unet")),
        "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(_CONFIGS / "vae")),
        "text_encoder": CLIPTextModel(CLIPTextConfig.from_json_file(_CONFIGS / "text_encoder" / "config.json")),
    }
    return StableDiffusionPipeline(
        **{name: model.to(torch.float16) for name, model in models.items()},
        scheduler=PNDMScheduler.from_config(PNDMScheduler.load_config(_CONFIGS / "scheduler")),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False, **pipeline_tokenizers("sd1"))


def ensure(cache=None, seed=0):
    """The fixture in `cache`, written first if it is not there yet."""
    fixture = Fixture(cache or default_cache())
    if fixture.complete:
        return fixture
    fixture.cache.mkdir(parents=True, exist_ok=True)
    pipe = build(seed)
    pipe.save_pretrained(fixture.folder, safe_serialization=True)
    (fixture.folder / "README.txt").write_text(README)
    tiny.save_single_file(pipe, fixture.single_file)
    (fixture.cache / _COMPLETE).write_text(f"seed {seed}\n")
    return fixture


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m easel_runner.fullsize", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=pathlib.Path, default=None,
                        help="folder to write into (default $EASEL_FIXTURE_CACHE, else ~/.cache/easel/fixtures)")
    args = parser.parse_args(argv)
    fixture = ensure(args.cache)
    print(f"{fixture.folder}\n{fixture.single_file}\n{fixture.config_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
