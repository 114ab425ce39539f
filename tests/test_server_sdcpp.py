"""The stable-diffusion.cpp engine behind the native API: engine choice per model and per
request, a GGUF file, cancel, and a corrupt GGUF. One server, the full-size random SD1.5
checkpoint loaded with q8_0 (--weight-type), 64x64, one step."""

import base64
import io

import pytest
import requests
from PIL import Image

from easel_server import EaselServer, get_job, submit, wait_for_state, wait_until

pytest.importorskip("stable_diffusion_cpp", reason="the optional stable-diffusion.cpp engine is not installed "
                                                  "(easel setup --install-engine stable-diffusion.cpp)")

import sdcpp_fixtures  # noqa: E402  (needs the gguf package: after the skip)

SDCPP = "stable-diffusion.cpp"
REQUEST = {"prompt": "a lighthouse at dusk", "width": 64, "height": 64, "steps": 1, "seed": 7, "sampler": "Euler",
           "cfg_scale": 7}


@pytest.fixture(scope="module")
def sdcpp_server(tmp_path_factory):
    checkpoint, config_dir = sdcpp_fixtures.ensure_checkpoint()
    gguf_file = sdcpp_fixtures.ensure_gguf(checkpoint)
    models = tmp_path_factory.mktemp("sdcpp-models")
    (models / "sd15.safetensors").symlink_to(checkpoint)
    (models / "sd15.config").symlink_to(config_dir)
    (models / "sd15-gguf.gguf").symlink_to(gguf_file)
    (models / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x07" * 4096)
    easel = EaselServer(tmp_path_factory.mktemp("sdcpp"), models, "--default-model", "sd15", "--no-preload",
                        "--max-loaded-models", "1", "--weight-type", "q8_0", "--preview-every", "0").start()
    try:
        yield easel.wait_ready()
    finally:
        easel.stop()


def png(result):
    return Image.open(io.BytesIO(base64.b64decode(result["images"][0]["base64"])))


def test_models_show_their_engine_and_capabilities_list_both(sdcpp_server):
    assert sdcpp_server.model("sd15")["engine"] == "diffusers"
    gguf_model = sdcpp_server.model("sd15-gguf")
    assert (gguf_model["format"], gguf_model["engine"], gguf_model.get("problem")) == ("gguf", SDCPP, None)
    assert gguf_model["load_options"] == {"engine": SDCPP, "weight_type": "q8_0", "vae_tiling": False}
    engines = {e["name"]: e for e in requests.get(sdcpp_server.url + "/v1/capabilities", timeout=10).json()["engines"]}
    assert set(engines) == {"diffusers", SDCPP}
    assert {"q8_0", "q4_0", "f16"} <= set(engines[SDCPP]["weight_types"])
    assert "Euler" in engines[SDCPP]["samplers"] and "LMS" not in engines[SDCPP]["samplers"]
    assert (engines[SDCPP]["cancel"], engines["diffusers"]["cancel"]) == ("runner_restart", "step")


@pytest.mark.parametrize(("fields", "field"), [
    ({"engine": "onnx"}, "engine"),
    ({"model": "sd15-gguf", "engine": "diffusers"}, "engine"),
])
def test_an_engine_that_cannot_serve_the_request_is_a_422(sdcpp_server, fields, field):
    response = sdcpp_server.txt2img(**REQUEST, **fields)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_a_corrupt_gguf_is_a_clear_error_and_the_server_stays_healthy(sdcpp_server):
    response = sdcpp_server.txt2img(**REQUEST, model="broken")
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("model_load_failed", "model")
    assert "not a readable GGUF file" in error["message"]
    assert sdcpp_server.health().status_code == 200


def test_cancelling_a_running_job_ends_the_runner_and_the_next_job_reloads(sdcpp_server):
    job = submit(sdcpp_server, **{**REQUEST, "steps": 40}, model="sd15-gguf")
    running = wait_until(lambda: (j := get_job(sdcpp_server, job["id"]))["step"] >= 1 and j, 600,
                         "the job never reported a step")
    pid = sdcpp_server.model("sd15-gguf")["runtime"]["runner_pid"]
    assert requests.post(f"{sdcpp_server.url}/v1/jobs/{job['id']}/cancel", timeout=30).status_code == 200
    cancelled = wait_for_state(sdcpp_server, job["id"], "cancelled", "failed", "succeeded", timeout=60)
    assert cancelled["state"] == "cancelled", cancelled
    assert running["step"] < 40
    assert "runner" in cancelled["error"]["message"] and "loads again on next use" in cancelled["error"]["message"]
    assert sdcpp_server.model("sd15-gguf")["state"] == "unloaded"

    # The GGUF file written with the gguf package loads again and generates.
    response = sdcpp_server.txt2img(**REQUEST, model="sd15-gguf")
    assert response.status_code == 200, response.text
    assert png(response.json()).size == (64, 64)
    reloaded = sdcpp_server.model("sd15-gguf")
    assert reloaded["runtime"]["runner_pid"] != pid
    assert (reloaded["engine"], reloaded["runtime"]["dtype"]) == (SDCPP, "q8_0")


@pytest.mark.parametrize("engine", [SDCPP, "diffusers"])
def test_the_same_request_through_either_engine(sdcpp_server, engine):
    response = sdcpp_server.txt2img(**REQUEST, engine=engine)
    assert response.status_code == 200, response.text
    result = response.json()
    image = png(result)
    assert image.size == (64, 64)
    assert "Steps: 1" in image.info["parameters"]
    parameters = result["parameters"]
    assert (parameters["model"], parameters["engine"]) == ("sd15", engine)
    assert (parameters["seed"], parameters["steps"]) == (7, 1)
    assert (parameters["sampler"], parameters["cfg_scale"]) == ("Euler", 7)
    assert sdcpp_server.model("sd15")["engine"] == engine
