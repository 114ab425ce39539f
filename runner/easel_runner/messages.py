"""Checked views of the `load` and `generate` requests."""

import math
import os
from dataclasses import dataclass

from . import imaging
from .errors import RunnerError, invalid_input

ENGINES = ("diffusers", "stable-diffusion.cpp")
FORMATS = ("diffusers", "single_file", "gguf")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MAX_SEED = 2**64 - 1
MAX_PREVIEW_EVERY = 2**31 - 1
MAX_SIDE = 16384
MAX_STEPS = 10000
RESIZE_MODES = ("resize", "crop", "fill")
LATENT_UPSCALERS = ("Latent", "Latent (nearest)", "Latent (bicubic)", "Latent (antialiased)")
IMAGE_UPSCALERS = ("Lanczos", "Nearest")
UPSCALERS = LATENT_UPSCALERS + IMAGE_UPSCALERS
MAX_MASK_BLUR = 256
MAX_PADDING = 4096
MAX_LORA_WEIGHT = 100.0

_REQUIRED = object()
# The fields a `generate` carries per job: at the top level, or in each of its `members`.
_MEMBER_FIELDS = ("prompt", "negative_prompt", "seeds", "infotexts")


@dataclass(frozen=True)
class LoadRequest:
    model_id: str
    path: str
    format: str
    architecture: str | None
    config_dir: str | None
    device: str
    dtype: str
    threads: int
    warm_up: bool = True
    engine: str = "diffusers"
    # stable-diffusion.cpp's load options: weight type ("auto" keeps the file's), a
    # separate VAE file, and tiled VAE decoding (less memory for large images).
    weight_type: str = "auto"
    vae_path: str | None = None
    vae_tiling: bool = False


@dataclass(frozen=True)
class Member:
    """One job's part of a `generate`: its own prompts, seeds and infotexts."""
    prompt: str
    negative_prompt: str
    seeds: list
    infotexts: list


@dataclass(frozen=True)
class GenerateRequest:
    members: tuple  # Member, one per job; more than one when the server merged jobs
    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str
    output_format: str
    quality: int
    preview_every: int = 0
    scheduler: str = "automatic"
    loras: tuple = ()
    init_image: object = None  # an RGB PIL image
    denoising_strength: float = 0.75
    resize_mode: str = "resize"
    inpaint: object = None  # Inpaint
    hires: object = None  # Hires

    @property
    def merged(self):
        """Whether this generation serves several jobs (a `members` list)."""
        return len(self.members) > 1

    @property
    def prompt(self):
        """The prompt of an unmerged request, for engines that take one prompt per call."""
        return self._only_member().prompt

    @property
    def negative_prompt(self):
        return self._only_member().negative_prompt

    def _only_member(self):
        if self.merged:
            raise RunnerError("invalid_request", "this engine does not take merged jobs: send no 'members'")
        return self.members[0]

    @property
    def seeds(self):
        """Every image's seed, member after member."""
        return [seed for member in self.members for seed in member.seeds]

    @property
    def infotexts(self):
        return [infotext for member in self.members for infotext in member.infotexts]

    @property
    def image_members(self):
        """The member index of every image, in image order."""
        return [index for index, member in enumerate(self.members) for _ in member.seeds]

    @property
    def member_starts(self):
        """The index of each member's first image."""
        starts, start = [], 0
        for member in self.members:
            starts.append(start)
            start += len(member.seeds)
        return starts


@dataclass(frozen=True)
class Lora:
    name: str
    path: str
    weight: float


@dataclass(frozen=True)
class Inpaint:
    mask: object  # an "L" PIL image, white = repaint
    blur: int
    invert: bool
    full_res: bool
    full_res_padding: int


@dataclass(frozen=True)
class Hires:
    width: int
    height: int
    upscaler: str
    steps: int
    denoising_strength: float


def parse_load(message, weight_types=("auto",)):
    model = _field(message, "model", dict)
    return LoadRequest(
        model_id=_field(model, "id", str, where="model"),
        path=_field(model, "path", str, where="model"),
        format=_choice(model, "format", FORMATS, where="model"),
        architecture=_field(model, "architecture", (str, type(None)), None, where="model"),
        config_dir=_field(model, "config_dir", (str, type(None)), None, where="model"),
        device=_choice(message, "device", DEVICES, "auto"),
        dtype=_choice(message, "dtype", DTYPES, "auto"),
        threads=_integer(message, "threads", 0, 4096, 0),
        warm_up=_flag(message, "warm_up", True),
        engine=_choice(message, "engine", ENGINES, "diffusers"),
        weight_type=_choice(message, "weight_type", weight_types, "auto"),
        vae_path=_field(model, "vae_path", (str, type(None)), None, where="model"),
        vae_tiling=_flag(message, "vae_tiling"),
    )


def parse_generate(message, samplers, schedulers=("automatic",)):
    members = _members(message)
    sampler = _field(message, "sampler", str)
    if sampler not in samplers:
        raise RunnerError("invalid_request", f"unknown sampler {sampler!r}; available: {', '.join(samplers)}")
    scheduler = _field(message, "scheduler", str, "automatic")
    if scheduler not in schedulers:
        raise RunnerError("invalid_request", f"unknown scheduler {scheduler!r}; available: {', '.join(schedulers)}")
    width = _integer(message, "width", 8, MAX_SIDE)
    height = _integer(message, "height", 8, MAX_SIDE)
    if width % 8 or height % 8:
        raise RunnerError("invalid_request", f"width and height must be multiples of 8, got {width}x{height}")
    steps = _integer(message, "steps", 1, MAX_STEPS)
    init_image = _init_image(message)
    denoising_strength = _strength(message, "denoising_strength", 0.75)
    if init_image is not None:
        _check_steps_left(steps, denoising_strength, "denoising_strength")
    return GenerateRequest(
        members=members,
        width=width,
        height=height,
        steps=steps,
        cfg_scale=float(_field(message, "cfg_scale", (int, float))),
        sampler=sampler,
        output_format=_choice(message, "output_format", OUTPUT_FORMATS),
        quality=_integer(message, "quality", 1, 100, 90),
        preview_every=_integer(message, "preview_every", 0, MAX_PREVIEW_EVERY, 0),
        scheduler=scheduler,
        loras=_loras(message),
        init_image=init_image,
        denoising_strength=denoising_strength,
        resize_mode=_choice(message, "resize_mode", RESIZE_MODES, "resize"),
        inpaint=_inpaint(message, init_image),
        hires=_hires(message, width, height, steps, init_image),
    )


def _members(message):
    """The jobs one `generate` serves: its `members`, or the message itself when it has none."""
    if "members" not in message:
        return (_member(message),)
    for name in _MEMBER_FIELDS:
        if name in message:
            raise RunnerError("invalid_request", f"field {name!r} goes inside each member when 'members' is given")
    items = _field(message, "members", list)
    if not items or not all(isinstance(item, dict) for item in items):
        raise RunnerError("invalid_request", "members must be a non-empty list of objects "
                                             "{prompt, negative_prompt, seeds, infotexts}")
    return tuple(_member(item, where="members[]") for item in items)


def _member(obj, where=None):
    seeds = _field(obj, "seeds", list, where=where)
    if not seeds or not all(_is_int(s) and 0 <= s <= MAX_SEED for s in seeds):
        raise RunnerError("invalid_request", f"seeds must be a non-empty list of integers in 0..{MAX_SEED}")
    infotexts = _field(obj, "infotexts", list, [""] * len(seeds), where=where)
    if len(infotexts) != len(seeds) or not all(isinstance(t, str) for t in infotexts):
        raise RunnerError("invalid_request", "infotexts must be a list of strings, one per seed")
    return Member(prompt=_field(obj, "prompt", str, where=where),
                  negative_prompt=_field(obj, "negative_prompt", str, "", where=where),
                  seeds=seeds, infotexts=infotexts)


def _init_image(message):
    data = _field(message, "init_image", (str, type(None)), None)
    return None if data is None else imaging.decode_input(data, "init_image").convert("RGB")


def _inpaint(message, init_image):
    data = _field(message, "mask", (str, type(None)), None)
    if data is None:
        return None
    if init_image is None:
        raise invalid_input("mask", "a mask needs the init_image it applies to: send init_image too")
    return Inpaint(
        mask=imaging.decode_input(data, "mask").convert("L"),
        blur=_bounded(message, "mask_blur", 0, MAX_MASK_BLUR, 4),
        invert=_flag(message, "invert_mask"),
        full_res=_flag(message, "inpaint_full_res"),
        full_res_padding=_bounded(message, "inpaint_full_res_padding", 0, MAX_PADDING, 32),
    )


def _hires(message, width, height, steps, init_image):
    hires = _field(message, "hires", (dict, type(None)), None)
    if hires is None:
        return None
    if init_image is not None:
        raise invalid_input("hires", "hires fix applies to txt2img only: leave out hires or init_image")
    upscaler = _field(hires, "upscaler", str, "Latent", where="hires")
    if upscaler not in UPSCALERS:
        raise RunnerError("invalid_request", f"unknown upscaler {upscaler!r}; available: {', '.join(UPSCALERS)}")
    target_width = _bounded(hires, "width", width, MAX_SIDE, where="hires")
    target_height = _bounded(hires, "height", height, MAX_SIDE, where="hires")
    if target_width % 8 or target_height % 8:
        raise invalid_input("hires", f"hires width and height must be multiples of 8, "
                                     f"got {target_width}x{target_height}")
    hires_steps = _bounded(hires, "steps", 0, MAX_STEPS, 0, where="hires")
    strength = _strength(hires, "denoising_strength", 0.7, where="hires")
    _check_steps_left(hires_steps or steps, strength, "hires.denoising_strength")
    return Hires(width=target_width, height=target_height, upscaler=upscaler, steps=hires_steps,
                 denoising_strength=strength)


def _loras(message):
    items = _field(message, "loras", list, [])
    loras = []
    for item in items:
        if not isinstance(item, dict):
            raise RunnerError("invalid_request", "loras must be a list of objects {name, path, weight}")
        lora = Lora(name=_field(item, "name", str, where="loras[]"), path=_field(item, "path", str, where="loras[]"),
                    weight=float(_field(item, "weight", (int, float), 1.0, where="loras[]")))
        if not os.path.isabs(lora.path):
            raise invalid_input("loras", f"LoRA {lora.name!r}: path must be absolute, got {lora.path!r}")
        if not (math.isfinite(lora.weight) and abs(lora.weight) <= MAX_LORA_WEIGHT):
            raise invalid_input("loras", f"LoRA {lora.name!r}: weight must be in "
                                         f"-{MAX_LORA_WEIGHT:g}..{MAX_LORA_WEIGHT:g}, got {lora.weight}")
        if any(other.path == lora.path for other in loras):
            raise invalid_input("loras", f"LoRA {lora.path} is listed twice: list it once with the summed weight")
        loras.append(lora)
    return tuple(loras)


def _strength(obj, name, default, where=None):
    value = float(_field(obj, name, (int, float), default, where=where))
    if not 0.0 <= value <= 1.0:
        raise invalid_input(_label(name, where), f"{_label(name, where)} must be in 0..1, got {value}")
    return value


def _check_steps_left(steps, strength, field):
    # img2img runs int(steps * strength) of the steps (diffusers and A1111 alike).
    if int(steps * strength) < 1:
        raise invalid_input(field, f"{field} {strength} of {steps} steps leaves no denoising step: "
                                   f"raise {field} or the steps")


def _bounded(obj, name, low, high, default=_REQUIRED, where=None):
    """An integer field whose range is about usable values (invalid_input), not the protocol."""
    value = _field(obj, name, int, default, where=where)
    if not low <= value <= high:
        raise invalid_input(_label(name, where), f"{_label(name, where)} must be in {low}..{high}, got {value}")
    return value


def _flag(obj, name, default=False):
    value = obj.get(name, default)
    if not isinstance(value, bool):
        raise RunnerError("invalid_request", f"field {name!r} must be true or false")
    return value


def _label(name, where):
    return f"{where}.{name}" if where else name


def _field(obj, name, types, default=_REQUIRED, where=None):
    label = _label(name, where)
    if name not in obj:
        if default is _REQUIRED:
            raise RunnerError("invalid_request", f"missing field {label!r}")
        return default
    value = obj[name]
    if not isinstance(value, types) or isinstance(value, bool):
        raise RunnerError("invalid_request", f"field {label!r} has the wrong type")
    return value


def _choice(obj, name, allowed, default=_REQUIRED, where=None):
    value = _field(obj, name, str, default, where)
    if value not in allowed:
        raise RunnerError("invalid_request", f"field {name!r} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _integer(obj, name, low, high, default=_REQUIRED):
    value = _field(obj, name, int, default)
    if not low <= value <= high:
        raise RunnerError("invalid_request", f"field {name!r} must be in {low}..{high}, got {value}")
    return value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)
