"""The runner's building blocks, in-process: tokenizer, shipped configs, LDM layout, previews."""

import base64
import io
import json
import pathlib

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint)
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from easel_runner import engine, ldm, preview, samplers, tiny
from easel_runner.engine import CONFIGS
from easel_runner.errors import RunnerError
from easel_runner.messages import parse_generate
from easel_runner.tokenizer import clip_tokenizer, pipeline_tokenizers


@pytest.mark.parametrize("architecture", ["sd1", "sd2", "sdxl"])
def test_tokenizer_is_clip_bpe(architecture):
    tokenizer = clip_tokenizer(architecture)
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tokenizer) == 49408
    assert tokenizer.model_max_length == 77
    padded = tokenizer("a cat", padding="max_length", max_length=77).input_ids
    assert padded[4] == (0 if architecture == "sd2" else 49407)  # SD 2 pads with "!"


def test_sdxl_second_tokenizer_pads_with_exclamation_mark():
    tokenizers = pipeline_tokenizers("sdxl")
    assert set(tokenizers) == {"tokenizer", "tokenizer_2"}
    second = tokenizers["tokenizer_2"]
    assert second("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert second("a cat", padding="max_length", max_length=77).input_ids[4] == 0


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("architecture,unet,text_encoder", [
    ("sd1", 859_520_964, 123_060_480),  # SD 1.5
    ("sd2", 865_910_724, 340_387_840),  # SD 2.1
])
def test_shipped_configs_build_the_real_models(architecture, unet, text_encoder):
    folder = CONFIGS / architecture
    with torch.device("meta"):
        assert parameter_count(UNet2DConditionModel.from_config(
            UNet2DConditionModel.load_config(folder, subfolder="unet"))) == unet
        assert parameter_count(AutoencoderKL.from_config(
            AutoencoderKL.load_config(folder, subfolder="vae"))) == 83_653_863
        assert parameter_count(CLIPTextModel(
            CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder"))) == text_encoder
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None]


def test_shipped_sdxl_config_builds_sdxl_base():
    folder = CONFIGS / "sdxl"
    with torch.device("meta"):
        assert parameter_count(UNet2DConditionModel.from_config(
            UNet2DConditionModel.load_config(folder, subfolder="unet"))) == 2_567_463_684
        vae_config = AutoencoderKL.load_config(folder, subfolder="vae")
        assert parameter_count(AutoencoderKL.from_config(vae_config)) == 83_653_863
        assert parameter_count(CLIPTextModel(
            CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder"))) == 123_060_480
        assert parameter_count(CLIPTextModelWithProjection(
            CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder_2"))) == 694_659_840
    assert vae_config["scaling_factor"] == 0.13025
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]


def test_sd2_config_is_v_prediction():
    config = json.loads((CONFIGS / "sd2" / "scheduler" / "scheduler_config.json").read_text())
    assert config["prediction_type"] == "v_prediction"


def test_tiny_weights_depend_only_on_the_seed():
    first, again, other = (tiny.build(seed).unet.state_dict() for seed in (0, 0, 1))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["conv_in.weight"], other["conv_in.weight"])


def test_ldm_layout_round_trips_through_diffusers_own_conversion():
    pipe = tiny.build(seed=3)
    unet, vae, text_encoder = pipe.unet.state_dict(), pipe.vae.state_dict(), pipe.text_encoder.state_dict()
    checkpoint = ldm.to_ldm(unet, pipe.unet.config, vae, pipe.vae.config, text_encoder)
    assert ldm.detect_architecture(checkpoint) == "sd1"
    for original, converted in [
        (unet, convert_ldm_unet_checkpoint(checkpoint, pipe.unet.config)),
        (vae, convert_ldm_vae_checkpoint(checkpoint, pipe.vae.config)),
        (text_encoder, {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(checkpoint).items()}),
    ]:
        assert converted.keys() == original.keys()
        assert all(torch.equal(converted[k], original[k]) for k in original)


def test_sdxl_ldm_layout_round_trips_through_diffusers_own_conversion():
    pipe = tiny.build(seed=3, architecture="sdxl")
    unet, second = pipe.unet.state_dict(), pipe.text_encoder_2.state_dict()
    checkpoint = ldm.to_ldm(unet, pipe.unet.config, pipe.vae.state_dict(), pipe.vae.config,
                            pipe.text_encoder.state_dict(), second)
    assert ldm.detect_architecture(checkpoint) == "sdxl"
    assert "model.diffusion_model.label_emb.0.0.weight" in checkpoint
    assert "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight" in checkpoint
    for original, converted in [
        (unet, convert_ldm_unet_checkpoint(checkpoint, pipe.unet.config)),
        (second, convert_open_clip_checkpoint(pipe.text_encoder_2, checkpoint,
                                              prefix="conditioner.embedders.1.model.")),
    ]:
        assert converted.keys() == original.keys()
        assert all(torch.equal(converted[k], original[k]) for k in original)


def test_ldm_names_of_full_size_sdxl():
    folder = CONFIGS / "sdxl"
    unet_config = UNet2DConditionModel.load_config(folder, subfolder="unet")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config).state_dict()
        second = CLIPTextModelWithProjection(
            CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder_2")).state_dict()
    checkpoint = ldm.to_ldm(unet, unet_config, {}, {"down_block_types": []}, {}, second)
    # Names every SDXL base checkpoint has.
    for name, shape in [("model.diffusion_model.label_emb.0.0.weight", (1280, 2816)),
                        ("model.diffusion_model.output_blocks.2.2.conv.weight", None),
                        ("model.diffusion_model.output_blocks.5.2.conv.weight", None),
                        ("model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight", None),
                        ("conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight", (3840, 1280)),
                        ("conditioner.embedders.1.model.text_projection", (1280, 1280)),
                        ("conditioner.embedders.1.model.positional_embedding", (77, 1280))]:
        assert name in checkpoint, name
        assert shape is None or checkpoint[name].shape == shape
    # Per block, the q, k and v weights and biases (6 tensors) become in_proj weight and bias.
    assert len(checkpoint) == len(unet) + len(second) - 4 * 32


def test_ldm_prefixes_cover_every_tensor_of_full_size_sd1():
    folder = CONFIGS / "sd1"
    unet_config = UNet2DConditionModel.load_config(folder, subfolder="unet")
    vae_config = AutoencoderKL.load_config(folder, subfolder="vae")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config).state_dict()
        vae = AutoencoderKL.from_config(vae_config).state_dict()
    checkpoint = ldm.to_ldm(unet, unet_config, vae, vae_config, {})
    # Names every SD 1.5 checkpoint has.
    for name in ["model.diffusion_model.output_blocks.11.0.skip_connection.weight",
                 "model.diffusion_model.output_blocks.2.1.conv.weight",
                 "model.diffusion_model.output_blocks.5.2.conv.weight",
                 "model.diffusion_model.input_blocks.3.0.op.weight",
                 "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight",
                 "first_stage_model.decoder.up.3.upsample.conv.weight",
                 "first_stage_model.encoder.mid.attn_1.q.weight"]:
        assert name in checkpoint
    assert checkpoint["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert len(checkpoint) == len(unet) + len(vae)


@pytest.mark.parametrize("keys,expected", [
    (["model.diffusion_model.x", "cond_stage_model.transformer.text_model.y"], "sd1"),
    (["model.diffusion_model.x", "cond_stage_model.model.token_embedding.weight"], "sd2"),
    (["model.diffusion_model.x", "conditioner.embedders.0.transformer.y", "conditioner.embedders.1.model.z"],
     "sdxl"),
    (["model.diffusion_model.x", "conditioner.embedders.0.model.z"], "sdxl_refiner"),
    (["cond_stage_model.transformer.text_model.y"], None),
    (["fc.weight"], None),
])
def test_detect_architecture(keys, expected):
    assert ldm.detect_architecture(keys) == expected


def test_lms_needs_scipy():
    try:
        import scipy  # noqa: F401
    except ImportError:
        assert "LMS" not in samplers.available()
    else:
        assert "LMS" in samplers.available()


def test_tiny_cli_writes_readme_and_config_folder(tiny):
    assert "random" in (tiny["folder"] / "README.txt").read_text()
    for part in ["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                 "scheduler/scheduler_config.json", "tokenizer/tokenizer_config.json"]:
        assert (tiny["config_dir"] / part).is_file(), part
    assert not list(pathlib.Path(tiny["config_dir"]).rglob("*.safetensors"))


@pytest.mark.parametrize("image,expected", [
    ((64, 64), (64, 64)), ((128, 64), (128, 64)), ((512, 512), (256, 256)), ((768, 512), (256, 171)),
    ((512, 1024), (128, 256)), ((4096, 2048), (256, 128)), ((8, 2048), (1, 256)),
])
def test_preview_size_keeps_the_aspect_within_256(image, expected):
    assert preview.preview_size(image[0] // 8, image[1] // 8) == expected


def test_preview_projects_latents_to_rgb_for_the_first_image():
    latents = torch.zeros(2, 4, 3, 5)
    latents[1] = 100  # the second image must not matter
    latents[0, 0, 0, 0] = 1  # channel 0 alone: (0.298, 0.207, 0.208) in [-1, 1]
    latents[0, 3, 2, 4] = 10  # far out of range: clamped to black
    rgb = np.asarray(preview.latents_to_rgb(latents.half()))
    assert rgb.shape == (3, 5, 3)
    assert tuple(rgb[1, 1]) == (128, 128, 128)  # zero latents are mid grey
    assert np.abs(rgb[0, 0].astype(int) - [166, 154, 154]).max() <= 1
    assert tuple(rgb[2, 4]) == (0, 0, 0)


def test_sdxl_previews_use_sdxl_factors():
    latents = torch.zeros(1, 4, 1, 1)
    latents[0, 0] = 1
    sdxl = np.asarray(preview.latents_to_rgb(latents, preview.SDXL_LATENT_RGB_FACTORS))[0, 0]
    assert np.abs(sdxl.astype(int) - [172, 181, 184]).max() <= 1
    noisy = torch.randn(1, 4, 8, 8)
    assert preview.make_preview(noisy, "sdxl")["data"] != preview.make_preview(noisy, "sd1")["data"]


def test_make_preview_is_a_jpeg_of_its_reported_size():
    made = preview.make_preview(torch.randn(1, 4, 16, 8))
    decoded = Image.open(io.BytesIO(base64.b64decode(made["data"])))
    assert (made["format"], decoded.format) == ("jpeg", "JPEG")
    assert decoded.size == (made["width"], made["height"]) == (64, 128)


def test_preview_failure_is_logged_and_skipped(capsys):
    request = parse_generate({"prompt": "", "width": 64, "height": 64, "steps": 6, "cfg_scale": 7,
                              "sampler": "Euler", "seeds": [1], "output_format": "png", "preview_every": 2},
                             ["Euler"])
    assert engine._previews(request, 2, 6, {"latents": torch.zeros(1, 4, 8, 8)})[0] is not None
    assert engine._previews(request, 2, 6, {"latents": torch.zeros(1, 3, 8, 8)}) == [None]
    assert "preview at step 2 of 6 failed" in capsys.readouterr().err
    assert engine._previews(request, 2, 6, {}) == [None]
    assert engine._previews(request, 3, 6, {"latents": torch.zeros(1, 4, 8, 8)}) is None
    assert engine._previews(request, 6, 6, {"latents": torch.zeros(1, 4, 8, 8)}) is None


def test_merged_previews_show_each_members_first_image():
    members = [{"prompt": "a", "seeds": [1, 2]}, {"prompt": "b", "seeds": [3]}]
    request = parse_generate({"members": members, "width": 64, "height": 64, "steps": 6, "cfg_scale": 7,
                              "sampler": "Euler", "output_format": "png", "preview_every": 2}, ["Euler"])
    assert (request.seeds, request.image_members, request.member_starts) == ([1, 2, 3], [0, 0, 1], [0, 2])
    with pytest.raises(RunnerError, match="does not take merged jobs"):
        _ = request.prompt  # what an engine without merged_jobs would read
    latents = torch.stack([torch.full((4, 8, 8), value) for value in (-1.0, 0.0, 1.0)])
    first, second = engine._previews(request, 2, 6, {"latents": latents})
    assert first == preview.make_preview(latents[0:1]) and second == preview.make_preview(latents[2:3])


@pytest.mark.parametrize("change, message", [
    ({"prompt": "top-level"}, "goes inside each member"),
    ({"members": []}, "non-empty list"),
    ({"members": [{"prompt": "a"}]}, "missing field 'members[].seeds'"),
])
def test_bad_members_are_invalid_requests(change, message):
    generate = {"members": [{"prompt": "a", "seeds": [1]}], "width": 64, "height": 64, "steps": 1,
                "cfg_scale": 7, "sampler": "Euler", "output_format": "png", **change}
    with pytest.raises(RunnerError) as raised:
        parse_generate(generate, ["Euler"])
    assert raised.value.code == "invalid_request" and message in str(raised.value)
