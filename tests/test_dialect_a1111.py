"""AUTOMATIC1111 `/sdapi/v1` proven with the real `webuiapi` client from PyPI, unchanged."""

import concurrent.futures
import time

import numpy as np
import pytest
import requests
import webuiapi

from dialects import BLOCKER, b64_png, decode_b64, gradient, left_half_mask, pixels
from easel_server import EaselServer, wait_until


@pytest.fixture(scope="module")
def a1111(tiny_models, tmp_path_factory):
    easel = EaselServer(tmp_path_factory.mktemp("a1111"), tiny_models, "--default-model", "tiny",
                        "--preview-every", "1").start()
    try:
        yield easel.wait_ready()
    finally:
        easel.stop()


@pytest.fixture
def api(a1111):
    return webuiapi.WebUIApi(baseurl=a1111.url + "/sdapi/v1", sampler="Euler", steps=2)


def test_txt2img_images_parameters_and_info(api):
    result = api.txt2img(prompt="a lighthouse", negative_prompt="fog", width=64, height=96, steps=2, seed=1234,
                         cfg_scale=6.5, batch_size=2)
    assert [image.size for image in result.images] == [(64, 96), (64, 96)]
    assert result.info["seed"] == 1234 and result.info["all_seeds"] == [1234, 1235]
    assert result.info["sd_model_name"] == "tiny" and result.info["steps"] == 2
    assert result.info["infotexts"][0].startswith("a lighthouse\nNegative prompt: fog\nSteps: 2, Sampler: Euler")
    assert "Seed: 1234," in result.images[0].info["parameters"]
    assert result.parameters["prompt"] == "a lighthouse" and result.parameters["seed"] == 1234
    assert not np.array_equal(pixels(result.images[0]), pixels(result.images[1]))


def test_lora_prompt_tag_is_read(a1111):
    response = requests.post(a1111.url + "/sdapi/v1/txt2img", timeout=120,
                             json={"prompt": "a cat <lora:no-such-lora:0.7>", "width": 64, "height": 64, "steps": 1})
    assert response.status_code == 404, response.text
    assert "no-such-lora" in response.json()["detail"]


def test_img2img_with_a_mask_keeps_the_unmasked_half(api):
    init = gradient()
    result = api.img2img(images=[init], mask_image=left_half_mask(), prompt="paint the left", width=64, height=64,
                         steps=2, seed=5, denoising_strength=1.0, mask_blur=0, inpaint_full_res=False)
    [image] = result.images
    assert image.size == (64, 64)
    out, original = pixels(image), pixels(init)
    # The right half is the init image, the left half was repainted.
    assert np.abs(out[:, 40:] - original[:, 40:]).max() <= 2
    assert np.abs(out[:, :24] - original[:, :24]).mean() > 10
    assert result.info["is_using_inpainting_conditioning"] is True


def test_set_model_via_options_and_the_next_txt2img_uses_it(api):
    titles = api.util_get_model_names()
    assert any(title.startswith("tiny-single.safetensors [") for title in titles)
    api.util_set_model("tiny-single")
    assert api.util_get_current_model().startswith("tiny-single.safetensors [")
    result = api.txt2img(prompt="a dog", width=64, height=64, steps=1)
    assert result.info["sd_model_name"] == "tiny-single"
    api.util_set_model("tiny")
    assert api.txt2img(prompt="a dog", width=64, height=64, steps=1).info["sd_model_name"] == "tiny"


def test_progress_while_a_job_runs_then_interrupt(api):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(api.txt2img, **BLOCKER)

        def stepping():
            progress = api.get_progress()
            return progress["state"]["sampling_step"] >= 2 and progress["current_image"] and progress
        progress = wait_until(stepping, 120, "progress never showed a running job")
        assert 0 < progress["progress"] < 1 and progress["state"]["job_count"] >= 1
        assert progress["state"]["sampling_steps"] == 150 and progress["eta_relative"] > 0
        assert decode_b64(progress["current_image"]).size[0] > 0
        started = time.monotonic()
        api.interrupt()
        result = running.result(timeout=60)
    assert time.monotonic() - started < 30
    assert result.images == [] and result.info["interrupted"] is True
    api.util_wait_for_ready(check_interval=0.1)
    idle = api.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0


def test_lists_clients_read(api, a1111):
    assert "Euler a" in api.util_get_sampler_names()
    assert "karras" in api.util_get_scheduler_names()
    assert {"Latent", "Latent (nearest)"} <= {mode["name"] for mode in api.get_latent_upscale_modes()}
    assert "Lanczos" in {upscaler["name"] for upscaler in api.get_upscalers()}
    assert api.get_sd_vae() == [] and api.get_scripts() == {"txt2img": [], "img2img": []}
    model = next(m for m in api.get_sd_models() if m["model_name"] == "tiny")
    assert set(model) >= {"title", "model_name", "hash", "sha256", "filename"} and len(model["hash"]) == 10
    assert api.get_memory()["ram"]["total"] > 0
    assert isinstance(api.get_loras(), list)
    for route in ("sd-modules", "cmd-flags", "embeddings"):
        assert requests.get(f"{a1111.url}/sdapi/v1/{route}", timeout=10).status_code == 200
    for route in ("refresh-checkpoints", "reload-checkpoint"):
        assert requests.post(f"{a1111.url}/sdapi/v1/{route}", timeout=120).status_code == 200


def test_png_info_reads_the_parameters_back(api):
    image = api.txt2img(prompt="a boat", width=64, height=64, steps=1, seed=9).image
    info = api.png_info(image)
    assert info.info.startswith("a boat\nSteps: 1") and "Seed: 9" in info.info


def test_errors_have_a1111_shape(a1111):
    url = a1111.url + "/sdapi/v1/txt2img"
    for body, field in (({"prompt": "x", "width": 65, "height": 64, "steps": 1}, "width"),
                        ({"prompt": "x", "steps": "many"}, "steps")):
        response = requests.post(url, json=body, timeout=30)
        assert response.status_code == 422, response.text
        error = response.json()
        assert set(error) >= {"error", "detail", "body", "errors"} and error["body"] == field
    response = requests.post(url, data=b"{not json", headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 422 and "error" in response.json()
    response = requests.post(a1111.url + "/sdapi/v1/options", json={"sd_model_checkpoint": "nope"}, timeout=30)
    assert response.status_code == 404 and response.json()["error"] == "HTTPException"
    response = requests.post(a1111.url + "/sdapi/v1/img2img", json={"prompt": "x"}, timeout=30)
    assert response.status_code == 422 and response.json()["body"] == "init_images"


def test_http_basic_auth_as_api_auth_does(tiny_models, tmp_path):
    """With API keys configured, A1111 clients authenticate with HTTP Basic (any user, the
    key as password), as with A1111's `--api-auth`; OpenAI clients with their Bearer key."""
    easel = EaselServer(tmp_path, tiny_models, "--default-model", "tiny", "--api-key", "a1111-test-key").start()
    try:
        easel.wait_ready()
        assert requests.get(easel.url + "/sdapi/v1/options", timeout=10).status_code == 401
        api = webuiapi.WebUIApi(baseurl=easel.url + "/sdapi/v1", username="user", password="a1111-test-key")
        assert api.txt2img(prompt="a key", width=64, height=64, steps=1).image.size == (64, 64)
        assert api.get_options()["sd_model_checkpoint"].startswith("tiny [")
        import openai
        client = openai.OpenAI(base_url=easel.url + "/v1", api_key="a1111-test-key", max_retries=0)
        assert client.images.generate(prompt="a key", size="64x64", extra_body={"steps": 1}).data[0].b64_json
    finally:
        easel.stop()
