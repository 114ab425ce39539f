"""Helpers shared by the dialect tests (AUTOMATIC1111, OpenAI, stable-diffusion.cpp)."""

import base64
import io

import numpy as np
from PIL import Image

# Long enough to still be running while a test looks at progress; tests interrupt it.
BLOCKER = {"prompt": "a blocker", "width": 256, "height": 256, "steps": 150}


def png_bytes(image):
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def b64_png(image):
    return base64.b64encode(png_bytes(image)).decode()


def decode_b64(text):
    return Image.open(io.BytesIO(base64.b64decode(text)))


def gradient(width=64, height=64):
    """A smooth, recognisable init image."""
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    rgb = np.stack([np.tile(x, (height, 1)), np.tile(y[:, None], (1, width)), np.full((height, width), 128, np.uint8)], axis=2)
    return Image.fromarray(rgb, "RGB")


def left_half_mask(width=64, height=64):
    """White (repaint) on the left half, black (keep) on the right."""
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (0, 0, width // 2, height))
    return mask


def pixels(image):
    return np.asarray(image.convert("RGB"), dtype=np.int16)
