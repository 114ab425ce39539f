"""Generate-request checks, schedule types, resize modes and inpainting masks, in-process."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from easel_runner import inpainting, messages, samplers, tiny
from easel_runner.errors import RunnerError
from easel_runner.imaging import resize_image

PROBE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
         "timestep_spacing": "leading", "steps_offset": 1}


def png(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def parse(**fields):
    message = {"prompt": "", "width": 64, "height": 64, "steps": 4, "cfg_scale": 7, "sampler": "Euler",
               "seeds": [1], "output_format": "png", **fields}
    return messages.parse_generate(message, samplers.available(), samplers.SCHEDULERS)


def error_of(**fields):
    with pytest.raises(RunnerError) as caught:
        parse(**fields)
    return caught.value


GREY = png(Image.new("RGB", (32, 16), (90, 90, 90)))


def test_new_fields_default_to_plain_txt2img():
    request = parse()
    assert (request.scheduler, request.loras, request.init_image, request.inpaint, request.hires) == (
        "automatic", (), None, None, None)
    assert (request.denoising_strength, request.resize_mode) == (0.75, "resize")


def test_full_request_is_parsed():
    request = parse(init_image=GREY, mask="data:image/png;base64," + GREY, denoising_strength=0.5, resize_mode="fill",
                    mask_blur=0, invert_mask=True, inpaint_full_res=True, inpaint_full_res_padding=8,
                    loras=[{"name": "a", "path": "/x/a.safetensors", "weight": 0.5}], scheduler="karras")
    assert request.init_image.size == (32, 16) and request.init_image.mode == "RGB"
    assert request.inpaint == messages.Inpaint(mask=request.inpaint.mask, blur=0, invert=True, full_res=True,
                                               full_res_padding=8)
    assert request.inpaint.mask.mode == "L"
    assert request.loras == (messages.Lora("a", "/x/a.safetensors", 0.5),)
    hires = parse(hires={"width": 128, "height": 96}).hires
    assert hires == messages.Hires(width=128, height=96, upscaler="Latent", steps=0, denoising_strength=0.7)


@pytest.mark.parametrize("fields,field", [
    ({"init_image": "not base64!"}, "init_image"),
    ({"init_image": base64.b64encode(b"GIF89a not an image").decode()}, "init_image"),
    ({"init_image": png(Image.new("RGB", (8, 8))).replace("A", "B", 3)[:40]}, "init_image"),
    ({"mask": GREY}, "mask"),
    ({"init_image": GREY, "mask": "@@"}, "mask"),
    ({"init_image": GREY, "denoising_strength": 1.5}, "denoising_strength"),
    ({"init_image": GREY, "denoising_strength": 0.1}, "denoising_strength"),  # 4 x 0.1 leaves no step
    ({"init_image": GREY, "mask": GREY, "mask_blur": -1}, "mask_blur"),
    ({"init_image": GREY, "mask": GREY, "inpaint_full_res_padding": 5000}, "inpaint_full_res_padding"),
    ({"hires": {"width": 32, "height": 64}}, "hires.width"),
    ({"hires": {"width": 128, "height": 100}}, "hires"),
    ({"hires": {"width": 128, "height": 128, "denoising_strength": -0.1}}, "hires.denoising_strength"),
    ({"hires": {"width": 128, "height": 128}, "init_image": GREY}, "hires"),
    ({"loras": [{"name": "a", "path": "relative.safetensors", "weight": 1}]}, "loras"),
    ({"loras": [{"name": "a", "path": "/a", "weight": 1}, {"name": "b", "path": "/a", "weight": 1}]}, "loras"),
    ({"loras": [{"name": "a", "path": "/a", "weight": 1e9}]}, "loras"),
])
def test_unusable_values_are_invalid_input_naming_the_field(fields, field):
    error = error_of(**fields)
    assert (error.code, error.field) == ("invalid_input", field), error.message
    assert error.frame("gen-1") == {"type": "error", "id": "gen-1", "code": "invalid_input", "field": field,
                                    "message": error.message}


@pytest.mark.parametrize("fields", [
    {"scheduler": "simple"}, {"scheduler": 3}, {"resize_mode": "zoom"}, {"init_image": 5},
    {"hires": {"width": 128, "height": 128, "upscaler": "ESRGAN"}}, {"hires": []}, {"loras": {}},
    {"loras": ["a"]}, {"loras": [{"name": "a"}]}, {"init_image": GREY, "mask": GREY, "invert_mask": 1},
])
def test_malformed_fields_are_invalid_requests(fields):
    error = error_of(**fields)
    assert error.code == "invalid_request"
    assert error.frame("gen-1").keys() == {"type", "id", "code", "message"}


@pytest.mark.parametrize("sampler,schedule,flags", [
    ("Euler", "karras", {"use_karras_sigmas": True, "use_exponential_sigmas": False}),
    ("Euler", "exponential", {"use_karras_sigmas": False, "use_exponential_sigmas": True}),
    ("DPM++ 2M", "sgm_uniform", {"use_karras_sigmas": False, "timestep_spacing": "trailing"}),
    ("DPM++ 2M Karras", "karras", {"use_karras_sigmas": True}),
    ("DDIM", "sgm_uniform", {"timestep_spacing": "trailing"}),
    ("Euler", "automatic", {"use_karras_sigmas": False, "timestep_spacing": "leading"}),
])
def test_schedule_types_set_the_scheduler_flags(sampler, schedule, flags):
    scheduler = samplers.make_scheduler(sampler, PROBE, schedule)
    assert {k: scheduler.config[k] for k in flags} == flags
    scheduler.set_timesteps(4)


def test_sgm_uniform_starts_at_the_last_training_timestep():
    automatic, sgm_uniform = (samplers.make_scheduler("DDIM", PROBE, schedule) for schedule in
                              ("automatic", "sgm_uniform"))
    automatic.set_timesteps(4)
    sgm_uniform.set_timesteps(4)
    assert automatic.timesteps.tolist() == [751, 501, 251, 1]  # "leading", SD's own
    assert sgm_uniform.timesteps.tolist() == [999, 749, 499, 249]


@pytest.mark.parametrize("sampler,schedule", [
    ("Euler a", "karras"), ("DDIM", "exponential"), ("PNDM", "karras"),
    ("DPM++ 2M Karras", "exponential"), ("DPM++ 2M Karras", "sgm_uniform"),
])
def test_impossible_combinations_are_invalid_input_naming_scheduler(sampler, schedule):
    with pytest.raises(RunnerError) as caught:
        samplers.make_scheduler(sampler, PROBE, schedule)
    assert (caught.value.code, caught.value.field) == ("invalid_input", "scheduler")
    assert sampler in caught.value.message


def gradient(width, height):
    x = np.linspace(0, 255, width, dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(x, (height, 1))] * 3, axis=-1), "RGB")


def test_resize_mode_resize_stretches():
    assert resize_image("resize", gradient(32, 16), 64, 64).size == (64, 64)


def test_resize_mode_crop_fills_the_frame_and_keeps_the_aspect():
    result = np.asarray(resize_image("crop", gradient(64, 16), 32, 32))
    # 64x16 -> 128x32, the middle 32 columns kept: no black bands, a flat-ish centre slice.
    assert result.min() > 90 and result.max() < 170
    assert (result[0] == result[-1]).all()


def test_resize_mode_fill_pads_by_stretching_the_edges():
    source = Image.new("RGB", (64, 16), (200, 10, 10))
    source.paste((10, 10, 200), (0, 0, 64, 8))  # blue above red
    result = np.asarray(resize_image("fill", source, 32, 32)).astype(int)
    assert result.shape == (32, 32, 3)
    # 64x16 fits as 32x8 in the middle; the bands above and below repeat its edge rows.
    assert np.abs(result[:12] - (10, 10, 200)).max() < 30
    assert np.abs(result[-12:] - (200, 10, 10)).max() < 30


def test_inpaint_prepare_blurs_and_pastes_back_only_the_masked_area():
    init = gradient(64, 64)
    mask = Image.new("L", (64, 64))
    mask.paste(255, (16, 16, 48, 48))
    request = messages.Inpaint(mask=mask, blur=4, invert=False, full_res=False, full_res_padding=32)
    prepared = inpainting.prepare(init, request, "resize", 64, 64)
    assert prepared.image.size == prepared.mask.size == (64, 64) and prepared.paste_box is None
    result = np.asarray(inpainting.paste_back(Image.new("RGB", (64, 64), (255, 0, 0)), prepared))
    keep = np.asarray(prepared.overlay)[..., 3] == 255
    assert np.array_equal(result[keep], np.asarray(init)[keep])
    assert keep[:5].all() and not keep[24:40, 24:40].any()
    assert (result[24:40, 24:40] == (255, 0, 0)).all()


def test_inpaint_full_res_crops_the_masked_box_and_keeps_the_init_size():
    init = gradient(200, 100)
    mask = Image.new("L", (200, 100))
    mask.paste(255, (100, 40, 120, 60))
    request = messages.Inpaint(mask=mask, blur=0, invert=False, full_res=True, full_res_padding=10)
    prepared = inpainting.prepare(init, request, "resize", 64, 64)
    assert prepared.paste_box == (90, 30, 40, 40)  # 20x20 box + 10 px padding, square like 64x64
    assert prepared.image.size == (64, 64)
    result = np.asarray(inpainting.paste_back(Image.new("RGB", (64, 64), (255, 0, 0)), prepared))
    assert result.shape == (100, 200, 3)
    assert (result[40:60, 100:120] == (255, 0, 0)).all()
    outside = np.ones((100, 200), bool)
    outside[40:60, 100:120] = False
    assert np.array_equal(result[outside], np.asarray(init)[outside])


def test_inverted_empty_mask_has_nothing_to_repaint_in_full_res():
    request = messages.Inpaint(mask=Image.new("L", (64, 64), 255), blur=0, invert=True, full_res=True,
                               full_res_padding=0)
    with pytest.raises(RunnerError) as caught:
        inpainting.prepare(gradient(64, 64), request, "resize", 64, 64)
    assert (caught.value.code, caught.value.field) == ("invalid_input", "mask")


@pytest.mark.parametrize("architecture,prefixes", [("sd1", {"lora_unet", "lora_te"}),
                                                   ("sdxl", {"lora_unet", "lora_te1", "lora_te2"})])
def test_tiny_lora_is_kohya_format(architecture, prefixes):
    tensors = tiny.build_lora(tiny.build(0, architecture), seed=1)
    layers = {key.split(".")[0] for key in tensors}
    assert {layer.split("_")[0] + "_" + layer.split("_")[1] for layer in layers} == prefixes
    text_layer = ("lora_te1" if architecture == "sdxl" else "lora_te") + "_text_model_encoder_layers_0_self_attn_q_proj"
    assert text_layer in layers
    assert "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k" in layers
    for layer in layers:
        down, up = tensors[f"{layer}.lora_down.weight"], tensors[f"{layer}.lora_up.weight"]
        assert down.shape[0] == up.shape[1] == tiny.LORA_RANK
        assert float(tensors[f"{layer}.alpha"]) == tiny.LORA_RANK
