"""SDXL, LoRAs, img2img, inpainting and the hires fix through the native API, with real
runners and tiny random models written by the runner's own tools."""

import base64
import io
import shutil

import numpy as np
import pytest
import requests
from PIL import Image

from easel_server import EaselServer, make_tiny_lora, make_tiny_model


@pytest.fixture(scope="module")
def feature_models(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("feature-models")
    shutil.copytree(tiny_models / "tiny", folder / "tiny")
    make_tiny_model(folder / "tiny-xl", single_file=folder / "tiny-xl-single.safetensors", arch="sdxl")
    make_tiny_lora(folder / "loras" / "noise.safetensors", seed=1)
    make_tiny_lora(folder / "loras" / "xl-noise.safetensors", seed=2, arch="sdxl")
    return folder


@pytest.fixture(scope="module")
def features(feature_models, tmp_path_factory):
    easel = EaselServer(tmp_path_factory.mktemp("features"), feature_models, "--default-model", "tiny").start()
    try:
        yield easel.wait_ready()
    finally:
        easel.stop()


def generate(server, **fields):
    fields = {"prompt": "a red barn", "width": 64, "height": 64, "steps": 2, "seed": 11, **fields}
    response = server.txt2img(**fields)
    assert response.status_code == 200, response.text
    return response.json()


def pixels(result, index=0):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(result["images"][index]["base64"]))).convert("RGB"))


def png_base64(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("model_id", ["tiny-xl", "tiny-xl-single"])
def test_sdxl_models_are_listed_and_generate(features, model_id):
    assert features.model(model_id)["architecture"] == "sdxl"
    result = generate(features, model=model_id, width=64, height=64, steps=1)
    assert pixels(result).shape == (64, 64, 3)
    assert result["parameters"]["model"] == model_id


def test_a_lora_applies_to_its_request_only(features):
    listed = requests.get(features.url + "/v1/loras", timeout=10).json()["data"]
    assert {lora["name"] for lora in listed} == {"noise", "xl-noise"}

    plain = pixels(generate(features))
    weightless = pixels(generate(features, loras=[{"name": "noise", "weight": 0}]))
    with_lora = generate(features, loras=[{"name": "noise", "weight": 1}])
    tagged = pixels(generate(features, prompt="a red barn <lora:noise:1>"))
    after = pixels(generate(features))

    assert np.array_equal(plain, weightless)
    assert not np.array_equal(plain, pixels(with_lora))
    assert np.array_equal(pixels(with_lora), tagged)
    assert np.array_equal(plain, after)
    assert with_lora["parameters"]["loras"] == [{"name": "noise", "weight": 1}]


@pytest.mark.parametrize("loras, status, field", [
    ([{"name": "missing"}], 404, "loras[0].name"),
    ([{"name": "xl-noise", "weight": 1}], 422, "loras"),
])
def test_a_lora_that_cannot_apply_is_refused(features, loras, status, field):
    response = features.txt2img(prompt="x", width=64, height=64, steps=1, loras=loras)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert features.health().status_code == 200


def test_img2img_starts_from_the_init_image(features):
    init = Image.new("RGB", (96, 64), (200, 30, 30))
    result = generate(features, init_image=png_base64(init), denoising_strength=0.5, resize_mode="crop")
    assert pixels(result).shape == (64, 64, 3)
    assert result["parameters"]["denoising_strength"] == 0.5 and result["parameters"]["resize_mode"] == "crop"


def test_inpainting_keeps_what_the_mask_keeps(features):
    init = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    result = generate(features, init_image=png_base64(init), mask=png_base64(mask), mask_blur=0,
                      denoising_strength=1)
    out = pixels(result)
    assert result["parameters"]["inpainting"] is True
    assert np.array_equal(out[:, 40:], np.asarray(init)[:, 40:])
    assert not np.array_equal(out[:, :24], np.asarray(init)[:, :24])


def test_hires_fix_returns_the_upscaled_size(features):
    result = generate(features, hires={"scale": 2, "upscaler": "Latent", "steps": 1, "denoising_strength": 0.5})
    assert pixels(result).shape == (128, 128, 3)
    assert result["images"][0]["width"] == 128
    assert result["parameters"]["hires"] == {"width": 128, "height": 128, "upscaler": "Latent", "steps": 1,
                                             "denoising_strength": 0.5}


def test_an_unreadable_init_image_names_the_field(features):
    response = features.txt2img(prompt="x", width=64, height=64, steps=1, init_image="aGVsbG8=")
    assert response.status_code == 422 and response.json()["error"]["field"] == "init_image"
