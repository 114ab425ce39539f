"""The original (LDM/CompVis, and Stability's SGM for SDXL) single-file checkpoint layout.

`detect_architecture` (kept in .architectures) tells the model family from tensor names.
`to_ldm` writes a diffusers pipeline's weights in that layout; diffusers only ships the
opposite direction (diffusers.loaders.single_file_utils), and this is its inverse.
"""

import torch

from .architectures import UNET_PREFIX, detect_architecture  # noqa: F401 (part of this module's API)

VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."
# SDXL: CLIP ViT-L as in SD 1.x, and OpenCLIP bigG in OpenCLIP's own layout.
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer.text_model."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."

_UNET_LAYERS = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
    # SDXL's embedding of the size and crop conditioning.
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
}
_OPENCLIP_LAYERS = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_OPENCLIP_BLOCK = {"layer_norm1.": "ln_1.", "layer_norm2.": "ln_2.", "mlp.fc1.": "mlp.c_fc.",
                   "mlp.fc2.": "mlp.c_proj.", "self_attn.out_proj.": "attn.out_proj."}
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
                "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_UNCHANGED = ("encoder.conv_in.", "encoder.conv_out.", "decoder.conv_in.", "decoder.conv_out.",
                  "quant_conv.", "post_quant_conv.")


def to_ldm(unet_state, unet_config, vae_state, vae_config, text_encoder_state, text_encoder_2_state=None):
    """One LDM-layout state dict from the diffusers state dicts of an SD 1.x pipeline, or
    of an SDXL one when the second (OpenCLIP) text encoder is given."""
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
    clip_prefix = CLIP_PREFIX if text_encoder_2_state is None else SDXL_CLIP_PREFIX
    for key, tensor in text_encoder_state.items():
        # transformers 5 flattened CLIPTextModel (no `text_model.` level); LDM keeps it.
        checkpoint[clip_prefix + key.removeprefix("text_model.")] = tensor
    if text_encoder_2_state is not None:
        checkpoint.update({SDXL_OPENCLIP_PREFIX + k: v for k, v in _to_openclip(text_encoder_2_state).items()})
    return {k: v.contiguous() for k, v in checkpoint.items()}


def _to_openclip(state):
    """A CLIPTextModelWithProjection state dict in OpenCLIP's layout: one fused q/k/v
    projection per block, and the text projection as a matrix applied from the right."""
    converted, fused = {}, {}
    for key, tensor in state.items():
        if key in _OPENCLIP_LAYERS:
            converted[_OPENCLIP_LAYERS[key]] = tensor
        elif key == "text_projection.weight":
            converted["text_projection"] = tensor.T
        elif key.startswith("text_model.encoder.layers."):
            index, _, rest = key.removeprefix("text_model.encoder.layers.").partition(".")
            block = f"transformer.resblocks.{index}."
            if rest.startswith(("self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj.")):
                projection, kind = rest.removeprefix("self_attn.").split(".")
                fused.setdefault(f"{block}attn.in_proj_{kind}", {})[projection[0]] = tensor
                continue
            for new, old in _OPENCLIP_BLOCK.items():
                if rest.startswith(new):
                    converted[block + old + rest.removeprefix(new)] = tensor
                    break
            else:
                raise ValueError(f"no OpenCLIP name for text encoder tensor {key!r}")
        elif key != "text_model.embeddings.position_ids":
            raise ValueError(f"no OpenCLIP name for text encoder tensor {key!r}")
    for name, parts in fused.items():
        converted[name] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return converted


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
