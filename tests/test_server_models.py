"""Model management: the registry, load/unload/switch within a budget, keep-alive, and
run-time defaults and presets, against a real server and real runners."""

import io
import shutil
import struct
import json

import pytest
import requests
from PIL import Image

from easel_server import EaselServer, get_job, make_tiny_model, submit, wait_for_state, wait_until


def write_safetensors(path, tensor_names):
    """A valid safetensors file holding one float per name."""
    header, offset = {}, 0
    for name in tensor_names:
        header[name] = {"dtype": "F32", "shape": [1], "data_offsets": [offset, offset + 4]}
        offset += 4
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * offset)


@pytest.fixture(scope="module")
def model_folder(tiny_models, tmp_path_factory):
    """Two loadable models plus files that are not models or cannot be served."""
    folder = tmp_path_factory.mktemp("managed-models")
    shutil.copytree(tiny_models / "tiny", folder / "tiny")
    make_tiny_model(folder / "other", seed=1)
    shutil.copy(tiny_models / "tiny-single.safetensors", folder / "single.safetensors")
    shutil.copytree(tiny_models / "tiny-single.config", folder / "single.config")
    (folder / "corrupt.safetensors").write_bytes(b"\xff" * 64)
    write_safetensors(folder / "a-lora.safetensors", ["lora_unet_down_blocks_0.lora_down.weight"])
    (folder / "quantized.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    (folder / "notes.txt").write_text("not a model")
    return folder


@pytest.fixture(scope="module")
def managed(model_folder, tmp_path_factory):
    """A server that may hold one model at a time."""
    easel = EaselServer(tmp_path_factory.mktemp("managed"), model_folder, "--default-model", "tiny",
                        "--max-loaded-models", "1").start()
    try:
        yield easel.wait_ready()
    finally:
        easel.stop()


def models(server):
    response = requests.get(server.url + "/v1/models", timeout=10)
    assert response.status_code == 200
    return {m["id"]: m for m in response.json()["data"]}


def post(server, path, **fields):
    return requests.post(server.url + path, json=fields or None, timeout=300)


def test_the_registry_tells_each_file_apart(managed):
    listed = models(managed)
    assert set(listed) == {"tiny", "other", "single", "corrupt", "a-lora", "quantized"}
    assert listed["tiny"]["architecture"] == "sd1" and listed["tiny"]["format"] == "diffusers"
    assert listed["single"]["architecture"] == "sd1" and listed["single"]["format"] == "single_file"
    for servable in ("tiny", "other", "single"):
        assert listed[servable]["engine"] == "diffusers" and listed[servable].get("problem") is None
    assert "safetensors header" in listed["corrupt"]["problem"]
    assert "LoRA" in listed["a-lora"]["problem"]
    assert listed["quantized"]["engine"] == "stable-diffusion.cpp" and listed["quantized"]["format"] == "gguf"
    assert listed["tiny"]["loaded"] is True and listed["tiny"]["memory_bytes"] > 0 and listed["tiny"]["last_used"]
    assert listed["other"]["loaded"] is False and listed["other"]["state"] == "unloaded"


def test_refresh_finds_files_added_while_running(managed, model_folder):
    shutil.copy(model_folder / "single.safetensors", model_folder / "late.safetensors")
    try:
        assert "late" not in models(managed)
        response = post(managed, "/v1/models/refresh")
        assert response.status_code == 200
        assert {m["id"] for m in response.json()["data"]} >= {"late", "tiny"}
    finally:
        (model_folder / "late.safetensors").unlink()
        post(managed, "/v1/models/refresh")


def test_loading_another_model_unloads_the_idle_one_within_a_budget_of_one(managed):
    loaded = post(managed, "/v1/models/other/load")
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["loaded"] is True and loaded.json()["memory_bytes"] > 0
    listed = models(managed)
    assert listed["other"]["loaded"] and not listed["tiny"]["loaded"]

    unloaded = post(managed, "/v1/models/other/unload")
    assert unloaded.status_code == 200 and unloaded.json()["loaded"] is False
    assert not any(m["loaded"] for m in models(managed).values())

    # A request naming a model loads it on demand.
    response = managed.txt2img(prompt="on demand", model="tiny", width=64, height=64, steps=1, seed=3)
    assert response.status_code == 200, response.text
    assert models(managed)["tiny"]["loaded"]


def test_a_running_job_is_never_evicted_to_make_room(managed):
    post(managed, "/v1/models/tiny/load")
    long_job = submit(managed, prompt="long", model="tiny", width=128, height=128, steps=20, seed=1)
    wait_until(lambda: get_job(managed, long_job["id"])["step"] >= 1, 120, "the long job never started")
    other_job = submit(managed, prompt="other", model="other", width=64, height=64, steps=1, seed=2)

    finished = wait_for_state(managed, long_job["id"], "succeeded", "failed", "cancelled", timeout=300)
    assert finished["state"] == "succeeded", finished
    other = wait_for_state(managed, other_job["id"], "succeeded", "failed", timeout=300)
    assert other["state"] == "succeeded", other
    assert other["started_at"] <= finished["finished_at"] or other["timings"]["load_seconds"] > 0
    listed = models(managed)
    assert listed["other"]["loaded"] and not listed["tiny"]["loaded"]


def test_keep_alive_expiry_unloads_an_idle_model(managed):
    response = post(managed, "/v1/models/tiny/load", keep_alive=1)
    assert response.status_code == 200, response.text
    assert response.json()["keep_alive"] == 1 and response.json()["expires_at"]
    wait_until(lambda: not models(managed)["tiny"]["loaded"], 60, "tiny was never unloaded after its keep-alive")


@pytest.mark.parametrize("model_id, status, code", [
    ("corrupt", 422, "unsupported_model"),
    ("a-lora", 422, "unsupported_model"),
    ("quantized", 422, "unsupported_model"),
    ("missing", 404, "model_not_found"),
    ("..%2F..%2Fetc%2Fpasswd", 404, "model_not_found"),
    ("%2Fetc%2Fpasswd", 404, "model_not_found"),
])
def test_unusable_model_ids_are_refused_and_the_server_stays_healthy(managed, model_id, status, code):
    response = requests.post(f"{managed.url}/v1/models/{model_id}/load", timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert managed.health().status_code == 200


@pytest.mark.parametrize("model_id", ["../tiny", "/etc/passwd", "tiny/../../other", "notes.txt"])
def test_requests_cannot_name_paths_as_models(managed, model_id):
    response = managed.txt2img(prompt="x", model=model_id, width=64, height=64, steps=1)
    assert response.status_code == 404, response.text
    assert response.json()["error"] == {**response.json()["error"], "code": "model_not_found", "field": "model"}


def test_unknown_keep_alive_values_are_refused(managed):
    response = post(managed, "/v1/models/tiny/load", keep_alive=-5)
    assert response.status_code == 422 and response.json()["error"]["field"] == "keep_alive"


def infotext(png_base64):
    import base64
    return Image.open(io.BytesIO(base64.b64decode(png_base64))).info["parameters"]


def test_defaults_and_presets_shape_what_requests_get(managed):
    base = managed.url
    try:
        patched = requests.patch(base + "/v1/defaults", json={"width": 64, "height": 64, "steps": 2,
                                                             "negative_prompt": "blurry"}, timeout=10)
        assert patched.status_code == 200, patched.text
        assert patched.json()["steps"] == 2 and patched.json()["sampler"] == "Euler a"
        assert requests.get(base + "/v1/defaults", timeout=10).json() == patched.json()

        preset = requests.put(base + "/v1/presets/quick", json={"steps": 1, "sampler": "Euler", "cfg_scale": 3,
                                                               "width": 72}, timeout=10)
        assert preset.status_code == 200, preset.text
        assert preset.json()["fields"] == {"steps": 1, "sampler": "Euler", "cfg_scale": 3, "width": 72}
        assert [p["name"] for p in requests.get(base + "/v1/presets", timeout=10).json()["data"]] == ["quick"]

        plain = managed.txt2img(prompt="defaults only", seed=5).json()
        assert (plain["parameters"]["width"], plain["parameters"]["steps"]) == (64, 2)
        assert plain["parameters"]["negative_prompt"] == "blurry"

        # Request fields beat the preset, which beats the defaults.
        shaped = managed.txt2img(prompt="preset", preset="quick", cfg_scale=5, seed=5).json()
        parameters = shaped["parameters"]
        assert (parameters["steps"], parameters["sampler"], parameters["cfg_scale"]) == (1, "Euler", 5)
        assert (parameters["width"], parameters["height"], parameters["negative_prompt"]) == (72, 64, "blurry")
        assert shaped["images"][0]["width"] == 72
        assert "Steps: 1, Sampler: Euler, CFG scale: 5" in infotext(shaped["images"][0]["base64"])
    finally:
        requests.delete(base + "/v1/presets/quick", timeout=10)
        requests.delete(base + "/v1/defaults", timeout=10)
    assert requests.get(base + "/v1/presets/quick", timeout=10).status_code == 404
    assert requests.get(base + "/v1/defaults", timeout=10).json()["steps"] == 20


@pytest.mark.parametrize("method, path, body, status, field", [
    ("patch", "/v1/defaults", {"steps": 0}, 422, "steps"),
    ("patch", "/v1/defaults", {"sampler": "Nope"}, 422, "sampler"),
    ("patch", "/v1/defaults", {"seed": 3}, 422, "seed"),
    ("put", "/v1/presets/bad", {"width": 65}, 422, "width"),
    ("put", "/v1/presets/bad", {"stepz": 3}, 422, "stepz"),
    ("put", "/v1/presets/-dash", {"steps": 3}, 422, "name"),
    ("put", "/v1/presets/nested", {"preset": "other"}, 422, "preset"),
    ("post", "/v1/txt2img", {"prompt": "x", "preset": "absent"}, 404, "preset"),
])
def test_bad_defaults_and_presets_are_refused_naming_the_field(managed, method, path, body, status, field):
    response = getattr(requests, method)(managed.url + path, json=body, timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


def test_defaults_and_presets_survive_a_restart(model_folder, tmp_path):
    def start():
        return EaselServer(tmp_path, model_folder, "--default-model", "tiny", "--no-preload").start().wait_ready()

    first = start()
    try:
        assert requests.patch(first.url + "/v1/defaults", json={"steps": 7}, timeout=10).status_code == 200
        assert requests.put(first.url + "/v1/presets/kept", json={"cfg_scale": 2.5}, timeout=10).status_code == 200
    finally:
        first.stop()
    second = start()
    try:
        assert requests.get(second.url + "/v1/defaults", timeout=10).json()["steps"] == 7
        assert requests.get(second.url + "/v1/presets/kept", timeout=10).json()["fields"] == {"cfg_scale": 2.5}
    finally:
        second.stop()


def test_samplers_schedulers_and_capabilities(managed):
    samplers = requests.get(managed.url + "/v1/samplers", timeout=10).json()
    names = [s["name"] for s in samplers]
    assert {"Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "LMS", "Heun", "UniPC"} <= set(names)
    schedulers = [s["name"] for s in requests.get(managed.url + "/v1/schedulers", timeout=10).json()]
    assert schedulers[0] == "automatic" and "karras" in schedulers
    capabilities = requests.get(managed.url + "/v1/capabilities", timeout=10).json()
    engine = capabilities["engines"][0]
    assert engine["name"] == "diffusers" and set(engine["architectures"]) >= {"sd1", "sd2", "sdxl"}
    assert set(engine["samplers"]) <= set(names)
    assert capabilities["limits"]["max_steps"] == 150
    assert capabilities["output_formats"] == ["png", "jpeg", "webp"]
