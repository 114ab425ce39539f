"""SDXL through a real runner serving the tiny SDXL-layout model: folder, single file,
architecture detection, img2img and LoRAs on the second text encoder's layout."""

import numpy as np
import pytest

import runner_client as rc


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    runner, _ = rc.start(tmp_path_factory.mktemp("sdxl") / "runner.log")
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def folder_pixels(runner, tiny_sdxl):
    loaded, _ = runner.request(rc.load_message("load-xl", tiny_sdxl["folder"], architecture=None))
    assert loaded["type"] == "loaded", loaded
    assert loaded["architecture"] == "sdxl"  # from model_index.json
    reply, before = runner.request(rc.generate_message("gen-xl", seeds=[4], size=64, width=96))
    assert reply["type"] == "result", reply
    assert [(f["step"], f["total"]) for f in before] == [(1, 2), (2, 2)]
    return rc.pixels(reply)


def test_folder_generates_the_asked_size(folder_pixels):
    assert folder_pixels[0].shape == (64, 96, 3)


def test_lora_for_sdxl_applies_and_unapplies(runner, folder_pixels, tiny_lora):
    lora = [{"name": "xl", "path": str(tiny_lora["sdxl"]), "weight": 1.0}]
    with_lora, _ = runner.request(rc.generate_message("gen-xl-lora", seeds=[4], size=64, width=96, loras=lora))
    assert with_lora["type"] == "result", with_lora
    assert not np.array_equal(rc.pixels(with_lora)[0], folder_pixels[0])
    again, _ = runner.request(rc.generate_message("gen-xl-again", seeds=[4], size=64, width=96))
    assert np.array_equal(rc.pixels(again)[0], folder_pixels[0])


def test_img2img_on_sdxl(runner, folder_pixels):
    reply, before = runner.request(rc.generate_message("gen-xl-img2img", seeds=[4], steps=2,
                                                       init_image=rc.png_base64(folder_pixels[0]),
                                                       denoising_strength=0.5))
    assert reply["type"] == "result", reply
    assert [(f["step"], f["total"]) for f in before] == [(1, 1)]
    assert rc.pixels(reply)[0].shape == (64, 64, 3)


def test_single_file_is_detected_as_sdxl_and_gives_the_same_pixels(runner, tiny_sdxl, folder_pixels):
    loaded, _ = runner.request(rc.load_message("load-xl-file", tiny_sdxl["single_file"], fmt="single_file",
                                               architecture=None, config_dir=tiny_sdxl["config_dir"]))
    assert (loaded["type"], loaded.get("architecture")) == ("loaded", "sdxl"), loaded
    reply, _ = runner.request(rc.generate_message("gen-xl-file", seeds=[4], size=64, width=96))
    assert reply["type"] == "result", reply
    assert np.abs(rc.pixels(reply)[0] - folder_pixels[0]).max() <= 1


def test_sdxl_folder_declared_sd1_fails_to_load(runner, tiny_sdxl):
    reply, _ = runner.request(rc.load_message("load-xl-as-sd1", tiny_sdxl["folder"], architecture="sd1"))
    assert (reply["type"], reply["code"]) == ("error", "model_load_failed")
    assert "sdxl" in reply["message"] or "StableDiffusionXLPipeline" in reply["message"]
