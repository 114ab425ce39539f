"""Checked views of the `load` and `generate` requests."""

from dataclasses import dataclass

from .errors import RunnerError

FORMATS = ("diffusers", "single_file")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MAX_SEED = 2**64 - 1
MAX_PREVIEW_EVERY = 2**31 - 1

_REQUIRED = object()


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


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str
    seeds: list
    output_format: str
    quality: int
    infotexts: list
    preview_every: int = 0


def parse_load(message):
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
    )


def parse_generate(message, samplers):
    seeds = _field(message, "seeds", list)
    if not seeds or not all(_is_int(s) and 0 <= s <= MAX_SEED for s in seeds):
        raise RunnerError("invalid_request", f"seeds must be a non-empty list of integers in 0..{MAX_SEED}")
    infotexts = _field(message, "infotexts", list, [""] * len(seeds))
    if len(infotexts) != len(seeds) or not all(isinstance(t, str) for t in infotexts):
        raise RunnerError("invalid_request", "infotexts must be a list of strings, one per seed")
    sampler = _field(message, "sampler", str)
    if sampler not in samplers:
        raise RunnerError("invalid_request", f"unknown sampler {sampler!r}; available: {', '.join(samplers)}")
    width = _integer(message, "width", 8, 16384)
    height = _integer(message, "height", 8, 16384)
    if width % 8 or height % 8:
        raise RunnerError("invalid_request", f"width and height must be multiples of 8, got {width}x{height}")
    return GenerateRequest(
        prompt=_field(message, "prompt", str),
        negative_prompt=_field(message, "negative_prompt", str, ""),
        width=width,
        height=height,
        steps=_integer(message, "steps", 1, 10000),
        cfg_scale=float(_field(message, "cfg_scale", (int, float))),
        sampler=sampler,
        seeds=seeds,
        output_format=_choice(message, "output_format", OUTPUT_FORMATS),
        quality=_integer(message, "quality", 1, 100, 90),
        infotexts=infotexts,
        preview_every=_integer(message, "preview_every", 0, MAX_PREVIEW_EVERY, 0),
    )


def _field(obj, name, types, default=_REQUIRED, where=None):
    label = f"{where}.{name}" if where else name
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
