"""Live previews: a cheap picture of the latents, without running the VAE.

The latents of Stable Diffusion 1.x/2.x and SDXL map to RGB almost linearly; these are
the 4x3 projections AUTOMATIC1111 calls "Approx cheap" (ComfyUI's latent preview uses the same
idea). It applies to the latents as the pipeline holds them (already multiplied by the
VAE's scaling factor) and gives RGB in about [-1, 1].
"""

import base64
import io

import torch
from PIL import Image

MAX_SIDE = 256
QUALITY = 70
LATENT_SCALE = 8  # the VAE downsamples by 8 in each direction

# Rows: latent channels 0..3; columns: R, G, B.
LATENT_RGB_FACTORS = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
# SDXL's VAE has its own latent space.
SDXL_LATENT_RGB_FACTORS = (
    (0.3448, 0.4168, 0.4395),
    (-0.1953, -0.0290, 0.0250),
    (0.1074, 0.0886, -0.0163),
    (-0.3730, -0.2499, -0.2088),
)


def preview_size(latent_width, latent_height):
    """The preview's size: the image's aspect, the long side at most MAX_SIDE (and no
    larger than the image itself)."""
    width, height = latent_width * LATENT_SCALE, latent_height * LATENT_SCALE
    long_side = max(width, height)
    target = min(MAX_SIDE, long_side)
    return max(1, round(width * target / long_side)), max(1, round(height * target / long_side))


def latents_to_rgb(latents, factors=LATENT_RGB_FACTORS):
    """The first image of a (batch, 4, h, w) latent tensor as an RGB PIL image (w x h)."""
    if latents.dim() != 4 or latents.shape[1] != len(LATENT_RGB_FACTORS):
        raise ValueError(f"expected latents of shape (batch, {len(LATENT_RGB_FACTORS)}, h, w), "
                         f"got {tuple(latents.shape)}")
    with torch.no_grad():
        sample = latents[0].detach().float()
        projection = torch.tensor(factors, dtype=sample.dtype, device=sample.device)
        rgb = torch.einsum("chw,cr->hwr", sample, projection)
        rgb = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return Image.fromarray(rgb.numpy(), "RGB")


def make_preview(latents, architecture="sd1"):
    """The `preview` object of a `progress` frame for `latents` of `architecture`."""
    image = latents_to_rgb(latents, SDXL_LATENT_RGB_FACTORS if architecture == "sdxl" else LATENT_RGB_FACTORS)
    size = preview_size(image.width, image.height)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=QUALITY)
    return {"format": "jpeg", "width": image.width, "height": image.height,
            "data": base64.b64encode(buffer.getvalue()).decode("ascii")}
