"""The README's examples and settings table stay true."""

import re
import subprocess

from PIL import Image

from easel_server import EASEL, REPO

README = (REPO / "README.md").read_text()


def test_the_curl_example_writes_a_png(server, tmp_path):
    example = README.split("<!-- readme-curl-example -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    command = example.replace("127.0.0.1:7860", f"127.0.0.1:{server.port}")
    subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True, timeout=300)
    image = Image.open(tmp_path / "lighthouse.png")
    assert image.format == "PNG" and image.size == (128, 128)
    assert "Seed: 42," in image.info["parameters"]


def test_every_setting_is_in_the_settings_table():
    help_text = subprocess.run([str(EASEL), "serve", "--help"], capture_output=True, text=True, check=True).stdout
    flags = set(re.findall(r"^  (--[a-z-]+)", help_text, re.MULTILINE)) - {"--version", "--help"}
    table = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    assert flags and not [flag for flag in flags if f"`{flag}" not in table]
