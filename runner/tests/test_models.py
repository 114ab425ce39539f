"""Loading: single-file checkpoints, broken and unsupported files, request errors."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import runner_client as rc


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    runner, _ = rc.start(tmp_path_factory.mktemp("models") / "runner.log")
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def folder_pixels(runner, tiny):
    loaded, _ = runner.request(rc.load_message("load-folder", tiny["folder"]))
    assert loaded["type"] == "loaded", loaded
    reply, _ = runner.request(rc.generate_message("gen-folder", seeds=[21, 22], steps=3))
    return rc.pixels(reply)


def assert_alive(runner):
    runner.send({"type": "ping", "id": "alive"})
    assert runner.recv() == {"type": "pong", "id": "alive"}


def assert_same_pixels(expected, reply):
    assert reply["type"] == "result", reply
    for a, b in zip(expected, rc.pixels(reply)):
        assert np.abs(a - b).max() <= 1


def test_generate_before_load_is_not_loaded(runner):
    reply, _ = runner.request(rc.generate_message("gen-early"))
    assert (reply["type"], reply["code"]) == ("error", "not_loaded")


def test_single_file_gives_the_same_pixels_as_the_folder(runner, tiny, folder_pixels):
    loaded, _ = runner.request(rc.load_message("load-file", tiny["single_file"], fmt="single_file",
                                               architecture=None, config_dir=tiny["config_dir"]))
    assert loaded["type"] == "loaded", loaded
    assert (loaded["architecture"], loaded["load_count"]) == ("sd1", 2)
    reply, _ = runner.request(rc.generate_message("gen-file", seeds=[21, 22], steps=3))
    assert_same_pixels(folder_pixels, reply)


def test_ckpt_single_file_gives_the_same_pixels(runner, tiny, folder_pixels, tmp_path):
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(str(tiny["single_file"]))}, path)
    loaded, _ = runner.request(rc.load_message("load-ckpt", path, fmt="single_file",
                                               config_dir=tiny["config_dir"]))
    assert loaded["type"] == "loaded", loaded
    reply, _ = runner.request(rc.generate_message("gen-ckpt", seeds=[21, 22], steps=3))
    assert_same_pixels(folder_pixels, reply)


def test_non_sd_safetensors_is_unsupported(runner, tmp_path):
    path = tmp_path / "classifier.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(path))
    reply, _ = runner.request(rc.load_message("load-other", path, fmt="single_file", architecture=None))
    assert (reply["type"], reply["code"]) == ("error", "unsupported_model")
    assert "sd1" in reply["message"] and "sd2" in reply["message"]


def test_sdxl_refiner_checkpoint_is_unsupported(runner, tmp_path):
    path = tmp_path / "refiner.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1),
               "conditioner.embedders.0.model.ln_final.weight": torch.zeros(1)}, str(path))
    reply, _ = runner.request(rc.load_message("load-refiner", path, fmt="single_file", architecture=None))
    assert reply["code"] == "unsupported_model"
    assert "refiner" in reply["message"]


def test_other_pipeline_folder_is_unsupported(runner, tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLImg2ImgPipeline"}))
    reply, _ = runner.request(rc.load_message("load-refiner-folder", tmp_path, architecture=None))
    assert reply["code"] == "unsupported_model"


def test_declared_architecture_must_be_supported(runner, tiny):
    reply, _ = runner.request(rc.load_message("load-sd3", tiny["folder"], architecture="sd3"))
    assert reply["code"] == "unsupported_model"


def test_refused_loads_keep_the_loaded_model(runner):
    reply, _ = runner.request(rc.generate_message("gen-still-loaded", seeds=[1]))
    assert reply["type"] == "result", reply


def test_load_missing_a_field_is_an_invalid_request(runner):
    reply, _ = runner.request({"type": "load", "id": "load-bad", "model": {"id": "x"}})
    assert (reply["type"], reply["code"]) == ("error", "invalid_request")
    assert "model.path" in reply["message"]


def test_generate_with_bad_size_is_an_invalid_request(runner):
    reply, _ = runner.request(rc.generate_message("gen-size", size=65))
    assert reply["code"] == "invalid_request"


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file_fails_to_load_and_the_runner_lives(runner, tiny, tmp_path, damage):
    path = tmp_path / "broken.safetensors"
    data = tiny["single_file"].read_bytes()
    path.write_bytes(b"\x13\x37" * 5000 if damage == "garbage" else data[:len(data) // 2])
    reply, _ = runner.request(rc.load_message("load-broken", path, fmt="single_file",
                                              config_dir=tiny["config_dir"]))
    assert (reply["type"], reply["code"]) == ("error", "model_load_failed"), reply
    assert_alive(runner)


@pytest.mark.parametrize("what", ["folder", "config_dir"])
def test_missing_files_fail_to_load(runner, tiny, tmp_path, what):
    if what == "folder":
        message = rc.load_message("load-missing", tmp_path / "nothing")
    else:
        message = rc.load_message("load-no-config", tiny["single_file"], fmt="single_file",
                                  config_dir=tmp_path / "nothing")
    reply, _ = runner.request(message)
    assert reply["code"] == "model_load_failed"


def test_malformed_frame_exits_3(runner):
    assert_alive(runner)
    runner.send_raw(b"\x00\x00\x00\x05hello")
    reply = runner.recv()
    assert (reply["type"], reply["id"], reply["code"]) == ("error", None, "invalid_request")
    assert runner.wait_exit() == 3
