"""A new user's first start: empty models folder, settings from every source."""

import base64
import io
import json

import requests
from PIL import Image

from easel_server import EaselServer, free_port


def test_empty_models_folder_gets_the_demo_model_and_health_reports_start_up(tmp_path):
    models = tmp_path / "models"
    port = free_port()
    config = tmp_path / "easel.json"
    config.write_text(json.dumps({"max_steps": 12, "port": 1}))
    # The port comes from the environment (beating the config file), max_steps from the file.
    easel = EaselServer(tmp_path, models, "--config", str(config), env={"EASEL_PORT": str(port)})
    easel.command.remove("--port")
    easel.command.remove(str(easel.port))
    easel.port, easel.url = port, f"http://127.0.0.1:{port}"
    easel.start()
    try:
        # Setting up and loading take seconds; the HTTP port answers at once.
        first = easel.first_health()
        assert first.status_code == 503
        assert first.json()["status"] == "starting" and first.json()["reason"]
        assert first.headers["retry-after"]
        easel.wait_ready()

        listing = requests.get(easel.url + "/v1/models", timeout=10).json()
        assert [m["id"] for m in listing["data"]] == ["demo-tiny-random"]
        assert (models / "demo-tiny-random" / "README.txt").exists()

        too_many = easel.txt2img(prompt="x", steps=13)
        assert too_many.status_code == 422 and "between 1 and 12" in too_many.json()["error"]["message"]

        body = easel.txt2img(prompt="noise", width=64, height=64, steps=2).json()
        image = Image.open(io.BytesIO(base64.b64decode(body["images"][0]["base64"])))
        assert image.size == (64, 64) and body["parameters"]["model"] == "demo-tiny-random"
    finally:
        easel.stop()
    assert easel.process.returncode == 0, easel.log_tail()


def test_generation_before_ready_is_a_clear_503(tmp_path, tiny_models):
    easel = EaselServer(tmp_path, tiny_models, "--default-model", "tiny").start()
    try:
        easel.first_health()
        early = easel.txt2img(prompt="too early", width=64, height=64, steps=1)
        assert early.status_code == 503
        assert early.json()["error"]["code"] == "not_ready"
        assert "GET /health" in early.json()["error"]["message"]
        easel.wait_ready()
    finally:
        easel.stop()
