"""The exact request sequences real front ends send, replayed against Easel: Open WebUI
(its AUTOMATIC1111 and OpenAI engines) and SillyTavern."""

import io
import json
import socket

import pytest
import requests

from dialects import BLOCKER, decode_b64
from easel_server import EaselServer, wait_until


@pytest.fixture(scope="module")
def easel(tiny_models, tmp_path_factory):
    server = EaselServer(tmp_path_factory.mktemp("clients"), tiny_models, "--default-model", "tiny").start()
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def test_open_webui_automatic1111_engine(easel):
    base = easel.url
    # URL check and current model: GET options.
    options = requests.get(f"{base}/sdapi/v1/options", timeout=10).json()
    assert options["sd_model_checkpoint"].startswith("tiny [")
    models = requests.get(f"{base}/sdapi/v1/sd-models", timeout=10).json()
    other = next(m for m in models if m["model_name"] == "tiny-single")
    assert {"title", "model_name"} <= set(other)
    # Switching: GET options, change sd_model_checkpoint, POST the whole dict back.
    options = requests.get(f"{base}/sdapi/v1/options", timeout=10).json()
    options["sd_model_checkpoint"] = other["title"]
    response = requests.post(f"{base}/sdapi/v1/options", json=options, timeout=120)
    assert response.status_code == 200, response.text
    assert requests.get(f"{base}/sdapi/v1/options", timeout=10).json()["sd_model_checkpoint"] == other["title"]
    response = requests.post(f"{base}/sdapi/v1/txt2img", timeout=120, json={
        "prompt": "a tea cup", "batch_size": 1, "width": 64, "height": 64, "steps": 2, "negative_prompt": ""})
    assert response.status_code == 200, response.text
    body = response.json()
    assert json.loads(body["info"])["sd_model_name"] == "tiny-single"
    assert decode_b64(body["images"][0]).size == (64, 64)
    # Back to the first model, the same way.
    options = requests.get(f"{base}/sdapi/v1/options", timeout=10).json()
    options["sd_model_checkpoint"] = next(m["title"] for m in models if m["model_name"] == "tiny")
    assert requests.post(f"{base}/sdapi/v1/options", json=options, timeout=120).status_code == 200


def test_open_webui_openai_engine(easel):
    response = requests.post(f"{easel.url}/v1/images/generations", timeout=120,
                             headers={"Authorization": "Bearer sk-unused"},
                             json={"model": "dall-e-2", "prompt": "a kite", "n": 1, "size": "64x64",
                                   "response_format": "b64_json", "steps": 2})
    assert response.status_code == 200, response.text
    assert decode_b64(response.json()["data"][0]["b64_json"]).size == (64, 64)
    png = decode_b64(response.json()["data"][0]["b64_json"])
    buffer = io.BytesIO()
    png.save(buffer, format="PNG")
    response = requests.post(f"{easel.url}/v1/images/edits", timeout=120,
                             files=[("image[]", ("image.png", buffer.getvalue(), "image/png"))],
                             data={"prompt": "make it red", "n": "1", "size": "64x64", "background": "auto",
                                   "steps": "2"})
    assert response.status_code == 200, response.text
    assert decode_b64(response.json()["data"][0]["b64_json"]).size == (64, 64)


def test_sillytavern_sequence(easel):
    base = easel.url
    options = requests.get(f"{base}/sdapi/v1/options", timeout=10).json()
    assert "forge_preset" not in options  # not Forge: SillyTavern asks sd-vae, then sd-modules
    for route in ("upscalers", "latent-upscale-modes", "sd-vae", "sd-modules", "samplers", "schedulers", "sd-models"):
        response = requests.get(f"{base}/sdapi/v1/{route}", timeout=10)
        assert response.status_code == 200 and isinstance(response.json(), list), route
    title = next(m["title"] for m in requests.get(f"{base}/sdapi/v1/sd-models", timeout=10).json()
                 if m["model_name"] == "tiny")
    assert requests.post(f"{base}/sdapi/v1/options", json={"sd_model_checkpoint": title}, timeout=120).status_code == 200
    wait_until(lambda: (p := requests.get(f"{base}/sdapi/v1/progress", timeout=10).json())["progress"] == 0
               and p["state"]["job_count"] == 0, 60, "never idle")
    response = requests.post(f"{base}/sdapi/v1/txt2img", timeout=120, json={
        "prompt": "a knight", "negative_prompt": "lowres", "sampler_name": "DPM++ 2M", "scheduler": "Karras",
        "steps": 2, "cfg_scale": 7, "width": 64, "height": 64, "restore_faces": False, "enable_hr": False,
        "hr_upscaler": "Latent", "hr_scale": 2, "hr_additional_modules": [], "denoising_strength": 0.7,
        "hr_second_pass_steps": 0, "seed": 42, "clip_skip": 1, "override_settings": {"CLIP_stop_at_last_layers": 1},
        "override_settings_restore_afterwards": True, "save_images": False, "send_images": True,
        "do_not_save_grid": False, "do_not_save_samples": False})
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert info["seed"] == 42 and info["sampler_name"] == "DPM++ 2M" and info["scheduler"] == "Karras"


def test_sillytavern_hires_fix(easel):
    response = requests.post(f"{easel.url}/sdapi/v1/txt2img", timeout=180, json={
        "prompt": "a tower", "steps": 2, "width": 64, "height": 64, "enable_hr": True, "hr_scale": 2,
        "hr_upscaler": "Latent", "hr_second_pass_steps": 2, "denoising_strength": 0.7, "seed": 1})
    assert response.status_code == 200, response.text
    assert decode_b64(response.json()["images"][0]).size == (128, 128)


def test_sillytavern_interrupts_when_its_client_disconnects(easel):
    body = json.dumps(BLOCKER).encode()
    with socket.create_connection(("127.0.0.1", easel.port)) as client:
        client.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        wait_until(lambda: requests.get(f"{easel.url}/sdapi/v1/progress", timeout=10).json()["state"]["sampling_step"] >= 1,
                   120, "the generation never started")
    # SillyTavern posts interrupt when its own client goes away.
    assert requests.post(f"{easel.url}/sdapi/v1/interrupt", timeout=10).status_code == 200
    wait_until(lambda: requests.get(f"{easel.url}/sdapi/v1/progress", timeout=10).json()["state"]["job_count"] == 0,
               60, "the interrupted job never ended")
    jobs = requests.get(f"{easel.url}/v1/jobs", params={"state": "cancelled"}, timeout=10).json()["data"]
    assert any(job["parameters"]["prompt"] == "a blocker" for job in jobs)
