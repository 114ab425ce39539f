"""stable-diffusion.cpp server API under `/sdcpp/v1`: the calls sd-server clients make."""

import pytest
import requests

from dialects import BLOCKER, b64_png, decode_b64, gradient
from easel_server import EaselServer, wait_until


@pytest.fixture(scope="module")
def sdcpp(tiny_models, tmp_path_factory):
    server = EaselServer(tmp_path_factory.mktemp("sdcpp"), tiny_models, "--default-model", "tiny").start()
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def job(server, job_id):
    response = requests.get(f"{server.url}/sdcpp/v1/jobs/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_capabilities(sdcpp):
    capabilities = requests.get(sdcpp.url + "/sdcpp/v1/capabilities", timeout=10).json()
    assert "euler_a" in capabilities["sample_methods"] and "karras" in capabilities["schedulers"]
    assert "tiny" in capabilities["models"]


def test_img_gen_queues_a_job_and_polling_returns_the_images(sdcpp):
    body = {"prompt": "a castle <sd_cpp_extra_args>{\"seed\": 77}</sd_cpp_extra_args>", "negative_prompt": "rain",
            "width": 64, "height": 64, "batch_count": 2,
            "sample_params": {"sample_steps": 2, "sample_method": "euler", "scheduler": "karras",
                              "guidance": {"txt_cfg": 5.0}}}
    response = requests.post(sdcpp.url + "/sdcpp/v1/img_gen", json=body, timeout=30)
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["kind"] == "img_gen" and queued["status"] == "queued" and queued["created"] > 0
    assert queued["poll_url"] == f"/sdcpp/v1/jobs/{queued['id']}"
    done = wait_until(lambda: (j := job(sdcpp, queued["id"]))["status"] in ("completed", "failed") and j, 120,
                      "the job never finished")
    assert done["status"] == "completed" and done["error"] is None and done["completed"] >= done["created"]
    images = done["result"]["images"]
    assert [image["index"] for image in images] == [0, 1] and done["result"]["output_format"] == "png"
    first = decode_b64(images[0]["b64_json"])
    assert first.size == (64, 64)
    infotext = first.info["parameters"]
    assert infotext.startswith("a castle\nNegative prompt: rain\nSteps: 2, Sampler: Euler, Schedule type: Karras, CFG scale: 5")
    assert "Seed: 77," in infotext


def test_img2img_through_init_image(sdcpp):
    body = {"prompt": "a variation", "width": 64, "height": 64, "init_image": b64_png(gradient()), "strength": 0.5,
            "sample_params": {"sample_steps": 2}}
    queued = requests.post(sdcpp.url + "/sdcpp/v1/img_gen", json=body, timeout=30).json()
    done = wait_until(lambda: (j := job(sdcpp, queued["id"]))["status"] in ("completed", "failed") and j, 120,
                      "the job never finished")
    assert done["status"] == "completed", done
    assert "Denoising strength: 0.5" in decode_b64(done["result"]["images"][0]["b64_json"]).info["parameters"]


def test_cancel_queued_and_generating_jobs(sdcpp):
    blocker = requests.post(sdcpp.url + "/sdcpp/v1/img_gen", timeout=30, json={
        "prompt": BLOCKER["prompt"], "width": BLOCKER["width"], "height": BLOCKER["height"],
        "sample_params": {"sample_steps": BLOCKER["steps"]}}).json()
    waiting = requests.post(sdcpp.url + "/sdcpp/v1/img_gen", json={"prompt": "later", "width": 64, "height": 64},
                            timeout=30).json()
    assert job(sdcpp, waiting["id"])["queue_position"] == 1
    cancelled = requests.post(f"{sdcpp.url}/sdcpp/v1/jobs/{waiting['id']}/cancel", timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    wait_until(lambda: job(sdcpp, blocker["id"])["status"] == "generating", 120, "the blocker never started")
    requests.post(f"{sdcpp.url}/sdcpp/v1/jobs/{blocker['id']}/cancel", timeout=30)
    wait_until(lambda: job(sdcpp, blocker["id"])["status"] == "cancelled", 60, "the running job was not cancelled")


def test_errors_have_sdcpp_shape(sdcpp):
    response = requests.post(sdcpp.url + "/sdcpp/v1/img_gen", json={"prompt": "x", "width": 65}, timeout=30)
    assert response.status_code == 400 and response.json()["error"].startswith("width") and response.json()["field"] == "width"
    response = requests.post(sdcpp.url + "/sdcpp/v1/img_gen", json={"prompt": "x", "sample_params": {"sample_steps": "a"}},
                             timeout=30)
    assert response.status_code == 400 and response.json()["field"] == "sample_params.sample_steps"
    response = requests.get(sdcpp.url + "/sdcpp/v1/jobs/job_nope", timeout=30)
    assert response.status_code == 404 and "error" in response.json()
