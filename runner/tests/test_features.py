"""img2img, inpainting, hires fix, LoRAs and schedule types through a real runner serving
the tiny SD 1 model."""

import re

import numpy as np
import pytest
from PIL import Image

import runner_client as rc

SEED = 3


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    runner, hello = rc.start(tmp_path_factory.mktemp("features") / "runner.log")
    yield runner, hello
    runner.close()


@pytest.fixture(scope="module")
def runner(started, tiny):
    reply, _ = started[0].request(rc.load_message("load-1", tiny["folder"]))
    assert reply["type"] == "loaded", reply
    return started[0]


@pytest.fixture(scope="module")
def plain(runner):
    """The txt2img image every request without the new fields must keep giving."""
    reply, _ = runner.request(rc.generate_message("gen-plain", seeds=[SEED]))
    return rc.pixels(reply)[0]


def encoded(pixels, size=None):
    image = Image.fromarray(pixels.astype(np.uint8))
    return rc.png_base64(image if size is None else image.resize(size))


def box_mask(size, box):
    mask = Image.new("L", size)
    mask.paste(255, box)
    return rc.png_base64(mask)


def generated(runner, request_id, **fields):
    reply, before = runner.request(rc.generate_message(request_id, seeds=[SEED], **fields))
    assert reply["type"] == "result", reply
    return rc.pixels(reply), [(f["step"], f["total"]) for f in before]


def test_hello_lists_the_new_capabilities(started):
    hello = started[1]
    assert hello["schedulers"] == ["automatic", "karras", "exponential", "sgm_uniform"]
    assert hello["upscalers"] == ["Latent", "Latent (nearest)", "Latent (bicubic)", "Latent (antialiased)",
                                  "Lanczos", "Nearest"]
    assert hello["architectures"] == ["sd1", "sd2", "sdxl"]
    assert hello["features"] == ["txt2img", "img2img", "inpaint", "hires", "lora", "merged_jobs"]


def test_img2img_runs_steps_times_strength_at_the_asked_size(runner, plain):
    images, progress = generated(runner, "gen-img2img", steps=4, init_image=encoded(plain, (96, 48)),
                                 denoising_strength=0.5, resize_mode="crop")
    assert progress == [(1, 2), (2, 2)]
    assert images[0].shape == (64, 64, 3)
    assert not np.array_equal(images[0], plain)


def test_low_strength_stays_closer_to_the_init_image(runner, plain):
    distances = []
    for strength in (0.25, 1.0):
        images, _ = generated(runner, f"gen-strength-{strength}", steps=4, init_image=encoded(plain),
                              denoising_strength=strength)
        distances.append(np.abs(images[0] - plain).mean())
    assert distances[0] < distances[1]


def test_inpaint_keeps_unmasked_pixels_exactly(runner, plain):
    images, progress = generated(runner, "gen-inpaint", init_image=encoded(plain),
                                 mask=box_mask((64, 64), (16, 16, 48, 48)), denoising_strength=1.0)
    assert progress == [(1, 2), (2, 2)]
    # Blur 4 (the default) spreads the box by up to 3 x 4 px; beyond that the init image is kept.
    kept = np.ones((64, 64), bool)
    kept[4:60, 4:60] = False
    assert np.array_equal(images[0][kept], plain[kept])
    assert not np.array_equal(images[0][24:40, 24:40], plain[24:40, 24:40])


def test_inverted_mask_repaints_the_outside(runner, plain):
    images, _ = generated(runner, "gen-inpaint-inverted", init_image=encoded(plain), mask_blur=0,
                          mask=box_mask((64, 64), (16, 16, 48, 48)), invert_mask=True, denoising_strength=1.0)
    assert np.array_equal(images[0][16:48, 16:48], plain[16:48, 16:48])
    assert not np.array_equal(images[0][:16], plain[:16])


def test_inpaint_full_res_pastes_the_region_into_the_init_image(runner, plain):
    init = np.asarray(Image.fromarray(plain.astype(np.uint8)).resize((128, 96))).astype(np.int16)
    images, _ = generated(runner, "gen-full-res", init_image=encoded(init), mask=box_mask((128, 96), (60, 40, 76, 56)),
                          mask_blur=0, inpaint_full_res=True, inpaint_full_res_padding=8, denoising_strength=1.0)
    assert images[0].shape == (96, 128, 3)  # the init image's size
    kept = np.ones((96, 128), bool)
    kept[40:56, 60:76] = False
    assert np.array_equal(images[0][kept], init[kept])
    assert not np.array_equal(images[0][40:56, 60:76], init[40:56, 60:76])


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_hires_fix_adds_its_pass_and_returns_the_hires_size(runner, upscaler):
    reply, before = runner.request(rc.generate_message(
        f"gen-hires-{upscaler}", seeds=[SEED, SEED + 1], preview_every=1,
        hires={"width": 96, "height": 80, "upscaler": upscaler, "steps": 0, "denoising_strength": 0.5}))
    assert reply["type"] == "result", reply
    # 2 first-pass steps, then int(2 x 0.5) = 1 step at 96x80.
    assert [(f["step"], f["total"]) for f in before] == [(1, 3), (2, 3), (3, 3)]
    assert [f["step"] for f in before if "preview" in f] == [1, 2]
    assert [image.shape for image in rc.pixels(reply)] == [(80, 96, 3)] * 2
    assert [(image["width"], image["height"]) for image in reply["images"]] == [(96, 80)] * 2


def test_cancel_stops_the_hires_pass(runner):
    runner.send(rc.generate_message("gen-hires-long", seeds=[SEED], hires={"width": 96, "height": 96,
                                                                            "steps": 200, "denoising_strength": 1.0}))
    while True:
        frame = runner.recv()
        assert (frame["type"], frame["id"]) == ("progress", "gen-hires-long"), frame
        assert frame["total"] == 202
        if frame["step"] >= 3:  # inside the second pass
            break
    runner.send({"type": "cancel", "id": "gen-hires-long"})
    reply, _ = runner.reply_to("gen-hires-long", timeout=60)
    assert reply["code"] == "cancelled"
    step = int(re.fullmatch(r"cancelled at step (\d+) of 202", reply["message"]).group(1))
    assert 3 <= step < 202


def test_lora_applies_to_its_request_only(runner, plain, tiny_lora):
    def with_lora(request_id, weight):
        images, _ = generated(runner, request_id, loras=[{"name": "detail", "path": str(tiny_lora["sd1"]),
                                                          "weight": weight}])
        return images[0]

    assert np.array_equal(with_lora("gen-lora-0", 0.0), plain)
    assert not np.array_equal(with_lora("gen-lora-1", 1.0), plain)
    images, _ = generated(runner, "gen-after-lora")
    assert np.array_equal(images[0], plain)


@pytest.fixture(scope="module")
def peft_lora(tiny, tiny_lora, tmp_path_factory):
    """The kohya LoRA re-saved by diffusers in the diffusers/PEFT format (`lora_A`, `lora_B`)."""
    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    from easel_runner.tokenizer import pipeline_tokenizers

    pipe = StableDiffusionPipeline.from_pretrained(tiny["folder"], safety_checker=None, local_files_only=True,
                                                   requires_safety_checker=False, **pipeline_tokenizers("sd1"))
    pipe.load_lora_weights(str(tiny_lora["sd1"]), adapter_name="kohya")
    folder = tmp_path_factory.mktemp("peft-lora")
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=get_peft_model_state_dict(pipe.unet, adapter_name="kohya"),
        text_encoder_lora_layers=get_peft_model_state_dict(pipe.text_encoder, adapter_name="kohya"))
    return folder / "pytorch_lora_weights.safetensors"


def test_peft_format_lora_gives_the_kohya_pixels(runner, tiny_lora, peft_lora):
    pixels = []
    for path in (tiny_lora["sd1"], peft_lora):
        images, _ = generated(runner, f"gen-{path.stem}", loras=[{"name": path.stem, "path": str(path),
                                                                  "weight": 0.7}])
        pixels.append(images[0])
    assert np.array_equal(pixels[0], pixels[1])


@pytest.mark.parametrize("make", ["missing", "garbage", "other_architecture"])
def test_unusable_lora_is_invalid_input_and_changes_nothing(runner, plain, tiny_lora, tmp_path, make):
    path = {"missing": tmp_path / "nothing.safetensors", "garbage": tmp_path / "garbage.safetensors",
            "other_architecture": tiny_lora["sdxl"]}[make]
    if make == "garbage":
        path.write_bytes(b"\x00" * 64)
    reply, _ = runner.request(rc.generate_message("gen-bad-lora", seeds=[SEED],
                                                  loras=[{"name": "bad", "path": str(path), "weight": 1.0}]))
    assert (reply["type"], reply["code"], reply["field"]) == ("error", "invalid_input", "loras"), reply
    assert "bad" in reply["message"]
    images, _ = generated(runner, "gen-after-bad-lora")
    assert np.array_equal(images[0], plain)


def test_schedule_type_changes_the_sigmas(runner):
    # diffusers spaces Karras sigmas between the first and last of the plain schedule:
    # at 2 steps they are the same two.
    automatic, _ = generated(runner, "gen-automatic", steps=3)
    karras, progress = generated(runner, "gen-karras", steps=3, scheduler="karras")
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert not np.array_equal(karras[0], automatic[0])


@pytest.mark.parametrize("fields,field", [
    ({"sampler": "Euler a", "scheduler": "karras"}, "scheduler"),
    ({"mask": box_mask((64, 64), (0, 0, 8, 8))}, "mask"),
    ({"init_image": "bm90IGFuIGltYWdl"}, "init_image"),
    ({"hires": {"width": 96, "height": 96, "denoising_strength": 2}}, "hires.denoising_strength"),
])
def test_unusable_values_are_invalid_input_frames(runner, fields, field):
    reply, before = runner.request(rc.generate_message("gen-invalid", **fields))
    assert (reply["type"], reply["id"], reply["code"], reply["field"]) == ("error", "gen-invalid", "invalid_input",
                                                                           field)
    assert reply["message"]
    assert before == []
