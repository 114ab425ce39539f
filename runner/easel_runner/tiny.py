"""Builds a tiny random-weight Stable Diffusion 1.5-layout model, for trying the API and for tests.

    python -m easel_runner.tiny --out DIR [--single-file NAME.safetensors] [--seed 0]

DIR becomes a diffusers folder. With --single-file NAME.safetensors, the same weights are
also written as one LDM-layout checkpoint, with its diffusers config folder NAME.config/
beside it (what the server passes as `config_dir`).
"""

import argparse
import pathlib
import sys

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

from . import ldm
from .tokenizer import clip_tokenizer

README = """\
Tiny random-weight Stable Diffusion 1.5-layout model, made by `python -m easel_runner.tiny`.

Its weights are random: every image it generates is noise. It exists to try the Easel
API and to test it quickly (a 64x64 image in 2 steps takes well under a second on a CPU).
"""

# Stable Diffusion 1.5's scheduler settings; clip_sample is unused by PNDM but kept in the
# config so that DDIM built from it does not clip, as in the original.
SD15_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                  "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True,
                  "steps_offset": 1, "clip_sample": False}


def build(seed=0):
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64),
        # Attention only at the lower resolution (as in diffusers' own tests): at the top
        # one it would dominate the run time.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=2, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=64)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5, vocab_size=49408,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer("sd1"), unet=unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def save_folder(pipe, out):
    pipe.save_pretrained(out, safe_serialization=True)
    (out / "README.txt").write_text(README)


def save_single_file(pipe, path):
    checkpoint = ldm.to_ldm(pipe.unet.state_dict(), pipe.unet.config, pipe.vae.state_dict(), pipe.vae.config,
                            pipe.text_encoder.state_dict())
    save_file(checkpoint, str(path))
    config_dir = config_dir_for(path)
    pipe.save_config(config_dir)
    pipe.unet.save_config(config_dir / "unet")
    pipe.vae.save_config(config_dir / "vae")
    pipe.text_encoder.config.save_pretrained(config_dir / "text_encoder")
    pipe.scheduler.save_config(config_dir / "scheduler")
    pipe.tokenizer.save_pretrained(config_dir / "tokenizer")
    return config_dir


def config_dir_for(single_file):
    path = pathlib.Path(single_file)
    return path.with_name(path.name.removesuffix(".safetensors") + ".config")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m easel_runner.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=pathlib.Path, metavar="DIR", help="diffusers folder to write")
    parser.add_argument("--single-file", type=pathlib.Path, metavar="NAME.safetensors",
                        help="also write the weights as one LDM-layout checkpoint, with its diffusers config "
                             "folder NAME.config/ beside it")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    args = parser.parse_args(argv)
    if args.single_file is not None and args.single_file.suffix != ".safetensors":
        parser.error("--single-file must end with .safetensors")
    pipe = build(args.seed)
    save_folder(pipe, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    if args.single_file is not None:
        args.single_file.parent.mkdir(parents=True, exist_ok=True)
        config_dir = save_single_file(pipe, args.single_file)
        print(f"wrote {args.single_file} and {config_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
