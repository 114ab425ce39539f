"""Builds tiny random-weight Stable Diffusion models and LoRAs, for trying the API and for tests.

    python -m easel_runner.tiny --out DIR [--arch sd1|sdxl] [--single-file NAME.safetensors] [--seed 0]
    python -m easel_runner.tiny --lora OUT.safetensors [--arch sd1|sdxl] [--seed 0]

DIR becomes a diffusers folder. With --single-file NAME.safetensors, the same weights are
also written as one LDM-layout checkpoint, with its diffusers config folder NAME.config/
beside it (what the server passes as `config_dir`). --lora writes a random LoRA in the
kohya format (what AUTOMATIC1111 users download) that fits the tiny model of --arch.
"""

import argparse
import pathlib
import re
import sys

import torch
from diffusers import (AutoencoderKL, EulerDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from . import ldm
from .tokenizer import pipeline_tokenizers

README = """\
Tiny random-weight Stable Diffusion ({arch}) model, made by `python -m easel_runner.tiny`.

Its weights are random: every image it generates is noise. It exists to try the Easel
API and to test it quickly (a 64x64 image in 2 steps takes well under a second on a CPU).
"""

ARCHITECTURES = ("sd1", "sdxl")

# Stable Diffusion 1.5's scheduler settings; clip_sample is unused by PNDM but kept in the
# config so that DDIM built from it does not clip, as in the original.
SD15_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                  "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True,
                  "steps_offset": 1, "clip_sample": False}
SDXL_SCHEDULER = {**SD15_SCHEDULER, "interpolation_type": "linear", "timestep_spacing": "leading"}

LORA_RANK = 4
# The layers kohya's trainer adapts by default: attention projections.
_LORA_TARGETS = re.compile(r"(attn[12]\.(to_q|to_k|to_v|to_out\.0)|self_attn\.(q|k|v|out)_proj)$")


def build(seed=0, architecture="sd1"):
    torch.manual_seed(seed)
    return _build_sdxl() if architecture == "sdxl" else _build_sd1()


def _build_sd1():
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64),
        # Attention only at the lower resolution (as in diffusers' own tests): at the top
        # one it would dominate the run time.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32)
    return StableDiffusionPipeline(
        vae=_vae(0.18215), text_encoder=CLIPTextModel(_text_config()), unet=unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False, **pipeline_tokenizers("sd1"))


def _build_sdxl():
    # The layout of diffusers' own SDXL pipeline tests: two text encoders whose hidden
    # states are concatenated (32 + 64), and the size/crop "time ids" embedding whose
    # input is 6 ids x 8 + the pooled 32 of the second encoder. The encoders differ in
    # width as in SDXL (768, 1280): single-file loading tells them apart by it.
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=32 + 64)
    return StableDiffusionXLPipeline(
        vae=_vae(0.13025), text_encoder=CLIPTextModel(_text_config()),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(hidden_size=64, projection_dim=32, hidden_act="gelu")),
        unet=unet, scheduler=EulerDiscreteScheduler.from_config(SDXL_SCHEDULER), **pipeline_tokenizers("sdxl"))


def _vae(scaling_factor):
    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=2, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=64, scaling_factor=scaling_factor)


def _text_config(hidden_size=32, **extra):
    return CLIPTextConfig(hidden_size=hidden_size, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5,
                          vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                          pad_token_id=49407, **extra)


def architecture_of(pipe):
    return "sdxl" if isinstance(pipe, StableDiffusionXLPipeline) else "sd1"


def save_folder(pipe, out):
    pipe.save_pretrained(out, safe_serialization=True)
    (out / "README.txt").write_text(README.format(arch=architecture_of(pipe)))


def save_single_file(pipe, path):
    text_encoders = [pipe.text_encoder.state_dict()]
    if architecture_of(pipe) == "sdxl":
        text_encoders.append(pipe.text_encoder_2.state_dict())
    checkpoint = ldm.to_ldm(pipe.unet.state_dict(), pipe.unet.config, pipe.vae.state_dict(), pipe.vae.config,
                            *text_encoders)
    save_file(checkpoint, str(path))
    config_dir = config_dir_for(path)
    pipe.save_config(config_dir)
    for name, component in pipe.components.items():
        if component is None:
            continue
        if hasattr(component, "save_config"):  # diffusers models and schedulers
            component.save_config(config_dir / name)
        elif name.startswith("tokenizer"):
            component.save_pretrained(config_dir / name)
        else:  # transformers models: the config only
            component.config.save_pretrained(config_dir / name)
    return config_dir


def config_dir_for(single_file):
    path = pathlib.Path(single_file)
    return path.with_name(path.name.removesuffix(".safetensors") + ".config")


def build_lora(pipe, seed=0):
    """A random kohya-format LoRA (`lora_down`, `lora_up`, `alpha` per layer) for `pipe`'s
    attention layers, in the UNet and every text encoder."""
    generator = torch.Generator().manual_seed(seed)
    if architecture_of(pipe) == "sdxl":
        parts = [("lora_unet", pipe.unet), ("lora_te1", pipe.text_encoder), ("lora_te2", pipe.text_encoder_2)]
    else:
        parts = [("lora_unet", pipe.unet), ("lora_te", pipe.text_encoder)]
    tensors = {}
    for prefix, model in parts:
        for name, module in model.named_modules():
            if not (isinstance(module, torch.nn.Linear) and _LORA_TARGETS.search(name)):
                continue
            if prefix != "lora_unet":
                # kohya names text encoder layers from `text_model.`, which transformers 5
                # dropped from CLIPTextModel.
                name = "text_model." + name.removeprefix("text_model.")
            key = f"{prefix}_{name.replace('.', '_')}"
            tensors[f"{key}.lora_down.weight"] = torch.randn(LORA_RANK, module.in_features, generator=generator) * 0.3
            tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, LORA_RANK, generator=generator) * 0.3
            tensors[f"{key}.alpha"] = torch.tensor(float(LORA_RANK))
    return tensors


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m easel_runner.tiny", description=__doc__.splitlines()[0])
    output = parser.add_mutually_exclusive_group(required=True)
    output.add_argument("--out", type=pathlib.Path, metavar="DIR", help="diffusers folder to write")
    output.add_argument("--lora", type=pathlib.Path, metavar="OUT.safetensors",
                        help="write a random kohya-format LoRA for the tiny model instead")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="sd1", help="model layout (default sd1)")
    parser.add_argument("--single-file", type=pathlib.Path, metavar="NAME.safetensors",
                        help="also write the weights as one LDM-layout checkpoint, with its diffusers config "
                             "folder NAME.config/ beside it")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    args = parser.parse_args(argv)
    for path, option in [(args.single_file, "--single-file"), (args.lora, "--lora")]:
        if path is not None and path.suffix != ".safetensors":
            parser.error(f"{option} must end with .safetensors")
    if args.lora is not None and args.single_file is not None:
        parser.error("--single-file goes with --out, not --lora")
    if args.lora is not None:
        # The LoRA only needs the model's layer shapes, which do not depend on the seed.
        args.lora.parent.mkdir(parents=True, exist_ok=True)
        save_file(build_lora(build(0, args.arch), args.seed), str(args.lora))
        print(f"wrote {args.lora}", file=sys.stderr)
        return
    pipe = build(args.seed, args.arch)
    save_folder(pipe, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    if args.single_file is not None:
        args.single_file.parent.mkdir(parents=True, exist_ok=True)
        config_dir = save_single_file(pipe, args.single_file)
        print(f"wrote {args.single_file} and {config_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
