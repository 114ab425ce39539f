"""The original (LDM/CompVis) single-file checkpoint layout of Stable Diffusion.

`detect_architecture` tells the model family from tensor names. `to_ldm` writes a
diffusers pipeline's weights in that layout; diffusers only ships the opposite direction
(diffusers.loaders.single_file_utils), and this is its inverse.
"""

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."

_UNET_LAYERS = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
                "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_UNCHANGED = ("encoder.conv_in.", "encoder.conv_out.", "decoder.conv_in.", "decoder.conv_out.",
                  "quant_conv.", "post_quant_conv.")


def detect_architecture(keys):
    """'sd1', 'sd2', 'sdxl', or None when the tensors are no Stable Diffusion checkpoint."""
    keys = list(keys)

    def has(prefix):
        return any(k.startswith(prefix) for k in keys)

    if has("conditioner.embedders."):
        return "sdxl"
    if not has(UNET_PREFIX):
        return None
    if has("cond_stage_model.model."):
        return "sd2"
    if has("cond_stage_model.transformer."):
        return "sd1"
    return None


def to_ldm(unet_state, unet_config, vae_state, vae_config, text_encoder_state):
    """One LDM-layout state dict from the diffusers state dicts of an SD 1.x pipeline."""
    checkpoint = {}
    unet_map = _unet_prefixes(unet_config)
    for key, tensor in unet_state.items():
        checkpoint[UNET_PREFIX + _unet_key(key, unet_map)] = tensor
    vae_map = _vae_prefixes(vae_config)
    for key, tensor in vae_state.items():
        name, is_attention = _vae_key(key, vae_map)
        if is_attention and tensor.ndim == 2:
            # LDM's VAE attention uses 1x1 convolutions where diffusers uses linear layers.
            tensor = tensor[:, :, None, None]
        checkpoint[VAE_PREFIX + name] = tensor
    for key, tensor in text_encoder_state.items():
        # transformers 5 flattened CLIPTextModel (no `text_model.` level); LDM keeps it.
        checkpoint[CLIP_PREFIX + key.removeprefix("text_model.")] = tensor
    return {k: v.contiguous() for k, v in checkpoint.items()}


def _unet_prefixes(config):
    """(diffusers prefix, LDM prefix, is_resnet) for every UNet block."""
    per_block = config["layers_per_block"] + 1
    count = len(config["down_block_types"])
    prefixes = []
    for i in range(count):
        for j in range(per_block - 1):
            block = per_block * i + j + 1
            prefixes.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{block}.0.", True))
            prefixes.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{block}.1.", False))
        if i < count - 1:
            prefixes.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{per_block * (i + 1)}.0.op.",
                             False))
        for j in range(per_block):
            block = per_block * i + j
            prefixes.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{block}.0.", True))
            prefixes.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{block}.1.", False))
        if i < count - 1:
            # The upsampler follows the last resnet, and its attention when the block has one.
            position = 2 if "CrossAttn" in config["up_block_types"][i] else 1
            block = per_block * (i + 1) - 1
            prefixes.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{block}.{position}.", False))
    prefixes.append(("mid_block.attentions.0.", "middle_block.1.", False))
    prefixes += [(f"mid_block.resnets.{j}.", f"middle_block.{2 * j}.", True) for j in range(2)]
    prefixes += [(new, old, False) for new, old in _UNET_LAYERS.items()]
    return prefixes


def _unet_key(key, prefixes):
    for new, old, is_resnet in prefixes:
        if key.startswith(new):
            rest = key[len(new):]
            if is_resnet:
                layer, _, tail = rest.partition(".")
                rest = f"{_UNET_RESNET[layer]}.{tail}"
            return old + rest
    raise ValueError(f"no LDM name for UNet tensor {key!r}")


def _vae_prefixes(config):
    """(diffusers prefix, LDM prefix, is_attention) for every VAE block."""
    count = len(config["down_block_types"])
    prefixes = []
    for i in range(count):
        # LDM numbers decoder levels from the lowest resolution up; diffusers the other way.
        level = count - 1 - i
        prefixes += [
            (f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.", False),
            (f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.", False),
            (f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{level}.block.", False),
            (f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{level}.upsample.", False),
        ]
    for part in ("encoder", "decoder"):
        prefixes += [
            (f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.", False),
            (f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.", False),
            (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", True),
            (f"{part}.conv_norm_out.", f"{part}.norm_out.", False),
        ]
    prefixes += [(name, name, False) for name in _VAE_UNCHANGED]
    return prefixes


def _vae_key(key, prefixes):
    for new, old, is_attention in prefixes:
        if key.startswith(new):
            rest = key[len(new):]
            if is_attention:
                layer, _, tail = rest.rpartition(".")
                rest = f"{_VAE_ATTENTION[layer]}.{tail}"
            return old + rest.replace("conv_shortcut", "nin_shortcut"), is_attention
    raise ValueError(f"no LDM name for VAE tensor {key!r}")
