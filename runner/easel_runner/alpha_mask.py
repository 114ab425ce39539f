"""OpenAI-style mask to Easel's: `python -m easel_runner.alpha_mask < mask.png > native.png`.

OpenAI's mask is transparent where the image should change; Easel's (and
AUTOMATIC1111's) is white there. A mask without transparency is passed through as
grayscale (white repaints)."""

import io
import sys

from PIL import Image


def convert(data):
    image = Image.open(io.BytesIO(data))
    image.load()
    if "A" in image.getbands() or "transparency" in image.info:
        alpha = image.convert("RGBA").getchannel("A")
        mask = alpha.point(lambda value: 255 if value < 128 else 0)
    else:
        mask = image.convert("L")
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return out.getvalue()


def main():
    sys.stdout.buffer.write(convert(sys.stdin.buffer.read()))


if __name__ == "__main__":
    main()
