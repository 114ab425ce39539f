"""Tells the Stable Diffusion family of a single-file checkpoint from its tensor names.

Kept free of torch, so that the stable-diffusion.cpp runner can use it without importing it.
"""

UNET_PREFIX = "model.diffusion_model."


def detect_architecture(keys):
    """'sd1', 'sd2', 'sdxl', 'sdxl_refiner', or None when the tensors are no Stable
    Diffusion checkpoint."""
    keys = list(keys)

    def has(prefix):
        return any(k.startswith(prefix) for k in keys)

    if has("conditioner.embedders.1."):
        return "sdxl"
    if has("conditioner.embedders."):
        return "sdxl_refiner"  # OpenCLIP bigG alone
    if not has(UNET_PREFIX):
        return None
    if has("cond_stage_model.model."):
        return "sd2"
    if has("cond_stage_model.transformer."):
        return "sd1"
    return None
