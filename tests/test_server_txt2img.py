"""End to end: a real server, a real runner, a real HTTP client."""

import base64
import concurrent.futures
import io

import numpy as np
import requests
from PIL import Image


def decode(image):
    return Image.open(io.BytesIO(base64.b64decode(image["base64"])))


def pixels(image):
    return np.asarray(decode(image).convert("RGB"), dtype=np.int16)


def test_png_has_the_requested_size_and_parameters_chunk(server):
    response = server.txt2img(prompt="a lighthouse at dusk", negative_prompt="fog", width=64, height=96,
                              steps=3, cfg_scale=6.5, sampler="Euler", seed=1234)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    [image] = body["images"]
    png = decode(image)
    assert png.format == "PNG" and png.size == (64, 96)
    assert image["seed"] == 1234 and (image["width"], image["height"]) == (64, 96)
    assert png.info["parameters"] == (
        "a lighthouse at dusk\nNegative prompt: fog\n"
        "Steps: 3, Sampler: Euler, CFG scale: 6.5, Seed: 1234, Size: 64x96, Model: tiny, Version: Easel 0.1.0")
    assert body["parameters"] == {
        "model": "tiny", "prompt": "a lighthouse at dusk", "negative_prompt": "fog", "width": 64, "height": 96,
        "steps": 3, "cfg_scale": 6.5, "sampler": "Euler", "seed": 1234, "seeds": [1234], "batch_size": 1,
        "output_format": "png", "quality": 90, "scheduler": "automatic", "loras": [], "inpainting": False,
        "engine": "diffusers"}
    timings = body["timings"]
    assert 0 < timings["engine_seconds"] <= timings["total_seconds"]


def test_same_seed_same_pixels_and_other_seed_other_pixels(server):
    request = dict(prompt="a red cube", width=64, height=64, steps=2, seed=42)
    first, again = server.txt2img(**request).json(), server.txt2img(**request).json()
    other = server.txt2img(**dict(request, seed=43)).json()
    assert np.array_equal(pixels(first["images"][0]), pixels(again["images"][0]))
    assert not np.array_equal(pixels(first["images"][0]), pixels(other["images"][0]))


def test_batch_gives_one_image_per_seed_and_each_reproduces_alone(server):
    body = server.txt2img(prompt="two cats", width=64, height=64, steps=2, seed=7, batch_size=2).json()
    assert [image["seed"] for image in body["images"]] == [7, 8] == body["parameters"]["seeds"]
    assert not np.array_equal(pixels(body["images"][0]), pixels(body["images"][1]))
    alone = server.txt2img(prompt="two cats", width=64, height=64, steps=2, seed=8).json()
    assert np.array_equal(pixels(alone["images"][0]), pixels(body["images"][1]))


def test_random_seed_is_reported(server):
    body = server.txt2img(prompt="dice", width=64, height=64, steps=1, seed=-1).json()
    seed = body["images"][0]["seed"]
    assert 0 <= seed <= 4294967295 and f"Seed: {seed}," in decode(body["images"][0]).info["parameters"]


def test_accept_image_png_returns_the_bytes(server):
    response = requests.post(server.url + "/v1/txt2img", json={"prompt": "a boat", "width": 64, "height": 64,
                                                               "steps": 2, "seed": 5},
                             headers={"Accept": "image/png"}, timeout=120)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-easel-seed"] == "5"
    assert "engine;dur=" in response.headers["server-timing"]
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (64, 64) and "Seed: 5," in image.info["parameters"]


def test_jpeg_and_webp_outputs(server):
    for name, pil_name in (("jpeg", "JPEG"), ("webp", "WEBP")):
        body = server.txt2img(prompt="a hill", width=64, height=64, steps=1, seed=1, output_format=name,
                              quality=80).json()
        assert body["images"][0]["format"] == name
        assert decode(body["images"][0]).format == pil_name


def test_every_sampler_generates(server):
    for sampler in ("Euler a", "DPM++ 2M Karras", "DDIM", "UniPC", "LMS", "Heun"):
        response = server.txt2img(prompt="a tree", width=64, height=64, steps=3, seed=3, sampler=sampler)
        assert response.status_code == 200, (sampler, response.text)
        assert f"Sampler: {sampler}," in decode(response.json()["images"][0]).info["parameters"]


def test_concurrent_requests_all_succeed_on_one_runner(server):
    def generate(seed):
        return server.txt2img(prompt=f"tower {seed}", width=64, height=64, steps=2, seed=seed)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(generate, range(100, 104)))
    assert [r.status_code for r in responses] == [200] * 4
    assert [r.json()["images"][0]["seed"] for r in responses] == [100, 101, 102, 103]
    assert len({r.json()["runner"]["pid"] for r in responses}) == 1


def test_the_model_is_loaded_once(server):
    before = server.model("tiny")["runtime"]
    body = server.txt2img(prompt="no reload", width=64, height=64, steps=1).json()
    after = server.model("tiny")["runtime"]
    assert body["timings"]["load_seconds"] == 0
    # Other tests share this server and may unload the model; this request must not reload it.
    assert before["load_count"] == after["load_count"] == body["runner"]["load_count"] >= 1
    assert before["runner_pid"] == after["runner_pid"] == body["runner"]["pid"]


def test_single_file_checkpoint_draws_the_same_pixels_as_its_folder(server):
    request = dict(prompt="same weights", width=64, height=64, steps=2, seed=99)
    folder = server.txt2img(model="tiny", **request).json()
    single = server.txt2img(model="tiny-single", **request).json()
    assert single["parameters"]["model"] == "tiny-single"
    assert np.abs(pixels(folder["images"][0]) - pixels(single["images"][0])).max() <= 1


def test_models_listing(server):
    listing = requests.get(server.url + "/v1/models", timeout=10).json()
    assert listing["object"] == "list" and listing["default_model"] == "tiny"
    models = {m["id"]: m for m in listing["data"]}
    assert set(models) == {"tiny", "tiny-single"}
    assert models["tiny"]["format"] == "diffusers" and models["tiny"]["architecture"] == "sd1"
    assert models["tiny-single"]["format"] == "single_file" and models["tiny-single"]["architecture"] == "sd1"
    assert models["tiny"]["loaded"] is True and models["tiny"]["runtime"]["state"] == "idle"
    assert models["tiny"]["runtime"]["memory_bytes"] > 0
