"""Encoding generated images with their infotext, as AUTOMATIC1111 does."""

import io

from PIL import Image
from PIL.PngImagePlugin import PngInfo

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

