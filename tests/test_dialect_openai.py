"""OpenAI Images (`/v1/images/generations`, `/v1/images/edits`) proven with the official
`openai` Python client from PyPI, base_url pointing at Easel."""

import numpy as np
import openai
import pytest
import requests
from PIL import Image

from dialects import decode_b64, gradient, png_bytes, pixels
from easel_server import EaselServer

QUICK = {"steps": 2}


@pytest.fixture(scope="module")
def easel(tiny_models, tmp_path_factory):
    server = EaselServer(tmp_path_factory.mktemp("openai"), tiny_models, "--default-model", "tiny",
                         "--preview-every", "1").start()
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture
def client(easel):
    return openai.OpenAI(base_url=easel.url + "/v1", api_key="sk-unused", max_retries=0, timeout=300)


def test_generate_b64_json_with_extensions(client):
    response = client.images.generate(model="dall-e-2", prompt="a red fox", n=2, size="64x96",
                                      response_format="b64_json", extra_body=dict(QUICK, seed=11, negative_prompt="blur"))
    assert response.created > 0 and len(response.data) == 2
    images = [decode_b64(item.b64_json) for item in response.data]
    assert [image.size for image in images] == [(64, 96), (64, 96)]
    assert "Seed: 11," in images[0].info["parameters"] and "Seed: 12," in images[1].info["parameters"]
    assert "Negative prompt: blur" in images[0].info["parameters"]
    assert response.usage.total_tokens >= 3 and response.output_format == "png" and response.size == "64x96"


def test_generate_url_serves_the_stored_image(client, easel):
    response = client.images.generate(model="tiny-single", prompt="a blue bird", size="64x64", response_format="url",
                                      output_format="jpeg", output_compression=80, extra_body=QUICK)
    [item] = response.data
    assert item.url.startswith(easel.url + "/v1/images/")
    fetched = requests.get(item.url, timeout=30)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/jpeg"
    image = Image.open(__import__("io").BytesIO(fetched.content))
    assert image.format == "JPEG" and image.size == (64, 64)


def test_edit_with_mask_changes_only_the_transparent_area(client):
    init = gradient()
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))  # transparent = edit (the left half)
    response = client.images.edit(image=("in.png", png_bytes(init), "image/png"),
                                  mask=("mask.png", png_bytes(mask), "image/png"),
                                  prompt="a new left half", extra_body=dict(QUICK, seed=3, mask_blur=0))
    [item] = response.data
    image = decode_b64(item.b64_json)
    assert image.size == (64, 64)
    out, original = pixels(image), pixels(init)
    assert np.abs(out[:, 40:] - original[:, 40:]).max() <= 2
    assert np.abs(out[:, :24] - original[:, :24]).mean() > 10


def test_edit_accepts_image_array(client):
    response = client.images.edit(image=[("a.png", png_bytes(gradient()), "image/png"),
                                         ("b.png", png_bytes(gradient()), "image/png")],
                                  prompt="variations", size="64x64", extra_body=QUICK)
    assert decode_b64(response.data[0].b64_json).size == (64, 64)


def test_stream_yields_partial_images_then_the_final_one(client):
    events = list(client.images.generate(prompt="a storm", size="64x64", stream=True, partial_images=2,
                                         extra_body={"steps": 3, "seed": 4}))
    kinds = [event.type for event in events]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"], kinds
    assert [event.partial_image_index for event in events[:2]] == [0, 1]
    final = decode_b64(events[-1].b64_json)
    assert final.size == (64, 64) and "Seed: 4," in final.info["parameters"]
    assert events[-1].usage.total_tokens >= 2


def test_models_list_serves_openai_clients(client):
    ids = [model.id for model in client.models.list()]
    assert "tiny" in ids and "tiny-single" in ids


def test_errors_have_openai_shape(client, easel):
    with pytest.raises(openai.BadRequestError) as bad_size:
        client.images.generate(prompt="x", size="65x64", extra_body=QUICK)
    assert bad_size.value.body["param"] == "width" and bad_size.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as bad_format:
        client.images.generate(prompt="x", size="big")
    assert bad_format.value.body["param"] == "size"
    with pytest.raises(openai.NotFoundError) as unknown:
        client.images.generate(prompt="x", model="no-such-model", size="64x64")
    assert unknown.value.body["code"] == "model_not_found"
    response = requests.post(easel.url + "/v1/images/generations", json={"n": 1}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt" and set(response.json()["error"]) == {"message", "type", "param", "code"}
