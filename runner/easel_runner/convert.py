"""Re-encode one image from stdin to stdout: `python -m easel_runner.convert --format jpeg`."""

import argparse
import io
import sys

from PIL import Image

from .imaging import encode


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--format", required=True, choices=["png", "jpeg", "webp"])
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()
    image = Image.open(io.BytesIO(sys.stdin.buffer.read()))
    image.load()
    infotext = image.info.get("parameters")
    sys.stdout.buffer.write(encode(image.convert("RGB"), args.format, args.quality, infotext))


if __name__ == "__main__":
    main()
