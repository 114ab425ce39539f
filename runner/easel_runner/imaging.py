"""Images in and out: decoding request images, A1111's resize modes, encoding results
with their infotext."""

import base64
import binascii
import io

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .errors import invalid_input

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
# EXIF UserComment starts with an 8-byte character code; readers (piexif, A1111) expect
# "UNICODE\0" followed by UTF-16 big-endian text.
_UNICODE_PREFIX = b"UNICODE\x00"

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def encode(image, output_format, quality, infotext):
    buffer = io.BytesIO()
    if output_format == "png":
        info = PngInfo()
        if infotext:
            info.add_text("parameters", infotext)
        image.save(buffer, "PNG", pnginfo=info)
    else:
        exif = Image.Exif()
        if infotext:
            exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _UNICODE_PREFIX + infotext.encode("utf-16-be")
        image.save(buffer, _PIL_FORMATS[output_format], quality=quality, exif=exif)
    return buffer.getvalue()



_INPUT_FORMATS = ("PNG", "JPEG", "WEBP")


def encoded_result(image, seed, request, infotext):
    """Image `image` of a generation as the `result` frame carries it."""
    data = encode(image, request.output_format, request.quality, infotext)
    return {"seed": seed, "format": request.output_format, "width": image.width, "height": image.height,
            "data": base64.b64encode(data).decode("ascii")}


def decode_input(data, field):
    """The image that base64 string `data` of request field `field` holds (PNG, JPEG or
    WebP; a `data:` URL prefix is allowed); anything else is an `invalid_input`."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=True)
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (binascii.Error, ValueError) as exc:
        raise invalid_input(field, f"{field} is not valid base64: {exc}") from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise invalid_input(field, f"{field} is not a readable PNG, JPEG or WebP image: {exc}") from None
    if image.format not in _INPUT_FORMATS:
        raise invalid_input(field, f"{field} is a {image.format} image: send PNG, JPEG or WebP")
    return image


def resize_image(mode, image, width, height):
    """`image` brought to width x height as AUTOMATIC1111's resize modes do it:
    `resize` stretches, `crop` fills the frame and crops the overflow, `fill` fits the
    image inside and fills the bands by stretching its edge rows or columns."""
    if mode == "resize":
        return image.resize((width, height), Image.Resampling.LANCZOS)
    ratio, source_ratio = width / height, image.width / image.height
    fits_width = ratio > source_ratio if mode == "crop" else ratio < source_ratio
    if fits_width:
        size = (width, image.height * width // image.width)
    else:
        size = (image.width * height // image.height, height)
    resized = image.resize(size, Image.Resampling.LANCZOS)
    result = Image.new(image.mode, (width, height))
    result.paste(resized, box=(width // 2 - size[0] // 2, height // 2 - size[1] // 2))
    if mode == "fill":
        _stretch_edges(result, resized, width, height)
    return result


def _stretch_edges(result, resized, width, height):
    if resized.width == width:
        band = height // 2 - resized.height // 2
        if band > 0:
            result.paste(resized.resize((width, band), box=(0, 0, width, 0)), box=(0, 0))
            result.paste(resized.resize((width, band), box=(0, resized.height, width, resized.height)),
                         box=(0, band + resized.height))
    else:
        band = width // 2 - resized.width // 2
        if band > 0:
            result.paste(resized.resize((band, height), box=(0, 0, 0, height)), box=(0, 0))
            result.paste(resized.resize((band, height), box=(resized.width, 0, resized.width, height)),
                         box=(band + resized.width, 0))
