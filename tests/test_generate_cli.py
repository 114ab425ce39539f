"""`easel generate`: the one-shot CLI loads a model in a runner, writes the images, exits."""

import base64
import io
import re
import subprocess

import numpy
from PIL import Image

from easel_server import EASEL, RUNNER_VENV


def generate(tiny_models, tmp_path, *arguments):
    command = [str(EASEL), "generate", "--models-dir", str(tiny_models), "--data-dir", str(tmp_path / "data"),
               "--runner-venv", str(RUNNER_VENV), *arguments]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_generates_the_image_the_server_generates(tiny_models, tmp_path, server):
    fields = {"prompt": "a lighthouse at dusk", "width": 64, "height": 96, "steps": 2, "seed": 42}
    finished = generate(tiny_models, tmp_path, "--model", "tiny", "--prompt", fields["prompt"], "--width", "64",
                        "--height", "96", "--steps", "2", "--seed", "42", "-o", "out.png")
    assert finished.returncode == 0, finished.stderr
    # Not a terminal: no progress bar, only the final lines.
    assert finished.stderr == ""
    assert re.search(r"out\.png: 64x96, seed 42$", finished.stdout, re.MULTILINE)
    assert re.search(r"^seconds: setup [\d.]+, load [\d.]+, engine [\d.]+, total [\d.]+$", finished.stdout,
                     re.MULTILINE)
    image = Image.open(tmp_path / "out.png")
    assert image.format == "PNG" and image.size == (64, 96)
    assert image.info["parameters"].startswith("a lighthouse at dusk\nSteps: 2, Sampler: Euler a, CFG scale: 7, Seed: 42, "
                                               "Size: 64x96, Model: tiny")
    served = server.txt2img(model="tiny", **fields)
    assert served.status_code == 200, served.text
    expected = Image.open(io.BytesIO(base64.b64decode(served.json()["images"][0]["base64"])))
    assert numpy.array_equal(numpy.asarray(image), numpy.asarray(expected))


def test_a_single_file_path_and_a_batch_write_one_file_per_image(tiny_models, tmp_path):
    finished = generate(tiny_models, tmp_path, "--model", str(tiny_models / "tiny-single.safetensors"),
                        "--prompt", "a fox", "--width", "64", "--height", "64", "--steps", "1", "--seed", "7",
                        "--batch-size", "2", "-o", str(tmp_path / "fox.jpg"))
    assert finished.returncode == 0, finished.stderr
    for index, seed in enumerate((7, 8)):
        image = Image.open(tmp_path / f"fox-{index}.jpg")
        assert image.format == "JPEG" and image.size == (64, 64)
        assert f"fox-{index}.jpg: 64x64, seed {seed}" in finished.stdout
    assert not (tmp_path / "fox.jpg").exists()


def test_bad_input_fails_naming_the_field_with_the_api_message(tiny_models, tmp_path):
    cases = [
        (["--model", "tiny", "--width", "100"], "width", "width must be a multiple of 8"),
        (["--model", "tiny", "--steps", "0"], "steps", "steps must be between 1 and"),
        (["--model", "nope"], "model", "no model 'nope' in the models folder"),
        (["--model", "tiny", "-o", "out.gif"], "output", "output must end in .png, .jpg, .jpeg or .webp"),
    ]
    for arguments, field, message in cases:
        finished = generate(tiny_models, tmp_path, *arguments)
        assert finished.returncode != 0, arguments
        assert f"({field}): {message}" in finished.stderr, finished.stderr
