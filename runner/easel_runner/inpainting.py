"""Inpainting as AUTOMATIC1111 prepares it: mask inversion and blur, the "only masked"
crop (inpaint_full_res), and the paste-back through the blurred mask that leaves every
unmasked pixel exactly as it was in the init image."""

from dataclasses import dataclass

from PIL import Image, ImageFilter, ImageOps

from .errors import invalid_input
from .imaging import resize_image


@dataclass(frozen=True)
class Prepared:
    image: Image.Image  # what the pipeline repaints, width x height
    mask: Image.Image  # "L", width x height, white = repaint
    overlay: Image.Image  # RGBA: the init image, opaque where it is kept
    paste_box: tuple | None  # (x, y, width, height) of the repainted crop in the overlay


def prepare(init_image, inpaint, resize_mode, width, height):
    mask = inpaint.mask
    if inpaint.invert:
        mask = ImageOps.invert(mask)
    if inpaint.blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(inpaint.blur))
    if inpaint.full_res:
        return _prepare_full_res(init_image, mask, inpaint.full_res_padding, width, height)
    image = resize_image(resize_mode, init_image, width, height)
    mask = resize_image(resize_mode, mask, width, height)
    # Doubling makes the kept area end halfway into the blur, as A1111 does.
    return Prepared(image=image, mask=mask, overlay=_overlay(image, mask.point(lambda v: min(255, 2 * v))),
                    paste_box=None)


def _prepare_full_res(init_image, mask, padding, width, height):
    mask = mask.resize(init_image.size) if mask.size != init_image.size else mask
    box = _crop_region(mask, padding, width / height)
    if box is None:
        raise invalid_input("mask", "the mask has nothing to repaint (all black): paint the area to change white, "
                                    "or set invert_mask")
    x1, y1, x2, y2 = box
    return Prepared(image=resize_image("fill", init_image.crop(box), width, height),
                    mask=resize_image("fill", mask.crop(box), width, height),
                    overlay=_overlay(init_image, mask), paste_box=(x1, y1, x2 - x1, y2 - y1))


def paste_back(generated, prepared):
    """The final image: the generated pixels where the mask repaints, the init image elsewhere."""
    if prepared.paste_box is not None:
        x, y, w, h = prepared.paste_box
        canvas = Image.new("RGBA", prepared.overlay.size)
        canvas.paste(resize_image("crop", generated, w, h), (x, y))
        generated = canvas
    result = generated.convert("RGBA")
    result.alpha_composite(prepared.overlay)
    return result.convert("RGB")


def _overlay(image, repaint_mask):
    overlay = image.convert("RGBA")
    overlay.putalpha(ImageOps.invert(repaint_mask))
    return overlay


def _crop_region(mask, padding, aspect):
    """The mask's bounding box plus `padding`, grown to `aspect` within the image (A1111's
    get_crop_region and expand_crop_region); None for an empty mask."""
    bbox = mask.getbbox()
    if bbox is None:
        return None
    x1, y1, x2, y2 = bbox
    x1, y1 = max(x1 - padding, 0), max(y1 - padding, 0)
    x2, y2 = min(x2 + padding, mask.width), min(y2 + padding, mask.height)
    if (x2 - x1) / (y2 - y1) > aspect:
        y1, y2 = _grow(y1, y2, int((x2 - x1) / aspect - (y2 - y1)), mask.height)
    else:
        x1, x2 = _grow(x1, x2, int((y2 - y1) * aspect - (x2 - x1)), mask.width)
    return x1, y1, x2, y2


def _grow(low, high, extra, limit):
    """[low, high) grown by `extra` around its centre, shifted back inside [0, limit)."""
    low -= extra // 2
    high += extra - extra // 2
    if high > limit:
        low -= high - limit
        high = limit
    if low < 0:
        high = min(high - low, limit)
        low = 0
    return low, high
