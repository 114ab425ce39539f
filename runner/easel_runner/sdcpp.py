"""The stable-diffusion.cpp engine, through the `stable-diffusion-cpp-python` binding:
GGUF and quantized Stable Diffusion checkpoints on the CPU (or whatever backend the
binding was built for). txt2img, img2img and LoRAs.

The binding is optional: it is imported when a model is loaded, and its absence is an
`engine_unavailable` error that names the install command. This module imports neither
torch nor diffusers, so a stable-diffusion.cpp runner stays small.

Two limits of binding 0.4.7 shape this module (docs/runner-protocol.md, "cancel"):
- the progress callback is process-wide and outlives the call that set it; a later
  generation would call a freed callback, so it is reset after every generation;
- there is no way to stop a running generation: the runner says so in `hello`
  (`cancel: "exit"`), and the server ends the runner to cancel.
"""

import contextlib
import math
import os
import platform
import struct
import sys
import time
import traceback

from . import imaging
from .architectures import detect_architecture
from .errors import RunnerError, invalid_input
from .resources import resident_bytes

NAME = "stable-diffusion.cpp"
BINDING_REQUIREMENT = "stable-diffusion-cpp-python==0.4.7"
INSTALL_HINT = (f"install it with `easel setup --install-engine stable-diffusion.cpp` (or `pip install "
                f"{BINDING_REQUIREMENT}` in the runner environment; it compiles stable-diffusion.cpp, which takes "
                f"several minutes)")
FORMATS = ("single_file", "gguf")
ARCHITECTURES = ("sd1", "sd2", "sdxl")
FEATURES = ("txt2img", "img2img", "lora")
# Load-time weight types: "auto" keeps the types stored in the file.
WEIGHT_TYPES = ("auto", "f32", "f16", "bf16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1", "q6_k", "q5_k", "q4_k",
                "q3_k", "q2_k")

# Easel's sampler names (those diffusers serves too) -> stable-diffusion.cpp sample method,
# and the schedule a "... Karras" name implies.
SAMPLERS = {
    "Euler": ("euler", None),
    "Euler a": ("euler_a", None),
    "Heun": ("heun", None),
    "DPM2": ("dpm2", None),
    "DPM++ 2M": ("dpm++2m", None),
    "DPM++ 2M Karras": ("dpm++2m", "karras"),
    "DDIM": ("ddim_trailing", None),
}
# Easel's schedule types -> stable-diffusion.cpp schedulers; `automatic` lets the library
# pick the model's own (discrete for SD 1.x/2.x).
SCHEDULERS = {"automatic": "default", "karras": "karras", "exponential": "exponential",
              "sgm_uniform": "sgm_uniform"}

_GGUF_MAGIC = b"GGUF"
_GGUF_VALUE_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def describe():
    """This engine's part of the `hello` message."""
    return {"engines": [NAME], "device": "cpu", "device_name": f"{platform.machine()} ({os.cpu_count()} threads)",
            "torch_version": None, "samplers": list(SAMPLERS), "schedulers": list(SCHEDULERS), "upscalers": [],
            "architectures": list(ARCHITECTURES), "features": list(FEATURES), "weight_types": list(WEIGHT_TYPES),
            "cancel": "exit"}


def gguf_tensor_names(path):
    """The tensor names a GGUF file declares; a file that is not a whole GGUF header is a
    `model_load_failed`, found here rather than by the native loader (which may abort)."""
    try:
        with open(path, "rb") as f:
            return _read_gguf_header(f, os.fstat(f.fileno()).st_size)
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise RunnerError("model_load_failed", f"{path} is not a readable GGUF file: {exc}") from None


def _read_gguf_header(f, size):
    def read(fmt):
        data = f.read(struct.calcsize(fmt))
        return struct.unpack(fmt, data)[0]

    def read_string():
        length = read("<Q")
        if length > size:
            raise ValueError(f"string length {length} exceeds the file")
        return f.read(length).decode("utf-8")

    def skip_value(kind):
        if kind == _GGUF_STRING:
            read_string()
        elif kind == _GGUF_ARRAY:
            item_kind, count = read("<I"), read("<Q")
            if item_kind in _GGUF_VALUE_SIZES:
                f.seek(_GGUF_VALUE_SIZES[item_kind] * count, os.SEEK_CUR)
            else:
                for _ in range(count):
                    skip_value(item_kind)
        elif kind in _GGUF_VALUE_SIZES:
            f.seek(_GGUF_VALUE_SIZES[kind], os.SEEK_CUR)
        else:
            raise ValueError(f"unknown metadata value type {kind}")

    if f.read(4) != _GGUF_MAGIC:
        raise ValueError("no GGUF magic at the start")
    version = read("<I")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} is not supported (2 or 3 are)")
    tensor_count, metadata_count = read("<Q"), read("<Q")
    for _ in range(metadata_count):
        read_string()
        skip_value(read("<I"))
    names = []
    for _ in range(tensor_count):
        names.append(read_string())
        dimensions = read("<I")
        f.seek(8 * dimensions + 4 + 8, os.SEEK_CUR)  # the shape, the type, the data offset
    if f.tell() > size:
        raise ValueError("the header runs past the end of the file (truncated?)")
    return names


def _binding():
    try:
        import stable_diffusion_cpp
        from stable_diffusion_cpp import stable_diffusion_cpp as native
    except ImportError as exc:
        raise RunnerError("engine_unavailable",
                          f"the stable-diffusion.cpp engine is not installed in the runner environment ({exc}); "
                          f"{INSTALL_HINT}") from None
    return stable_diffusion_cpp, native


class StableDiffusionCppEngine:
    def __init__(self):
        self._model = None
        self._native = None
        self._vae_tiling = False
        self.load_count = 0

    def load(self, request):
        started = time.monotonic()
        binding, self._native = _binding()
        if request.format not in FORMATS:
            raise RunnerError("unsupported_model", f"{NAME} loads single-file checkpoints and GGUF files, "
                                                   f"not a {request.format} model: use the diffusers engine")
        architecture = _architecture(request)
        self._model = None
        try:
            self._model = binding.StableDiffusion(
                model_path=request.path, vae_path=request.vae_path or "",
                wtype="default" if request.weight_type == "auto" else request.weight_type,
                n_threads=request.threads or os.cpu_count() or 1, vae_decode_only=False, verbose=True)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            raise RunnerError("model_load_failed", f"{NAME} could not load {request.path}: {exc}") from None
        self._vae_tiling = request.vae_tiling
        self.load_count += 1
        return {"model_id": request.model_id, "architecture": architecture, "device": "cpu",
                "dtype": request.weight_type, "load_seconds": round(time.monotonic() - started, 3),
                "load_count": self.load_count, "memory_bytes": resident_bytes(), "gpu_memory_bytes": None}

    def generate(self, request, on_progress, cancelled):
        sample_method, scheduler = _sampling(request.sampler, request.scheduler)
        _check_supported(request)
        if self._model is None:
            raise RunnerError("not_loaded", "generate before a successful load")
        started = time.monotonic()
        init_image = None
        if request.init_image is not None:
            init_image = imaging.resize_image(request.resize_mode, request.init_image, request.width, request.height)
        prompt = request.prompt + "".join(f"<lora:{lora.path}:{lora.weight:g}>" for lora in request.loras)
        progress = _BatchProgress(_total_steps(request), len(request.seeds), on_progress)
        images = []
        for index, (seed, infotext) in enumerate(zip(request.seeds, request.infotexts)):
            # The library cannot stop inside an image; between images the runner can.
            if cancelled.is_set():
                raise RunnerError("cancelled", f"cancelled at step {progress.reported} of {progress.total}")
            try:
                progress.start_image(index)
                with self._progress_callback_reset():
                    # One call per seed, so that each image depends on its own seed alone.
                    (image,) = self._model.generate_image(
                        prompt=prompt, negative_prompt=request.negative_prompt, width=request.width,
                        height=request.height, cfg_scale=request.cfg_scale, sample_method=sample_method,
                        scheduler=scheduler, sample_steps=request.steps, seed=seed % 2**63, batch_count=1,
                        init_image=init_image, strength=request.denoising_strength, vae_tiling=self._vae_tiling,
                        progress_callback=progress.callback)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                raise RunnerError("engine_error", f"{NAME} failed: {type(exc).__name__}: {exc}") from None
            images.append(imaging.encoded_result(image.convert("RGB"), seed, request, infotext))
        return images, round(time.monotonic() - started, 3)

    @contextlib.contextmanager
    def _progress_callback_reset(self):
        try:
            yield
        finally:
            # The binding leaves its callback registered after the call returns, and then
            # frees it: the next generation would jump into freed memory.
            self._native.sd_set_progress_callback(None, None)


class _BatchProgress:
    """Turns the library's per-image `(step, steps)` callbacks into steps of the whole
    batch, counted up to `total` and never backwards."""

    def __init__(self, total, images, on_progress):
        self.total = total
        self._images = images
        self._on_progress = on_progress
        self._image = 0
        self.reported = 0

    def start_image(self, index):
        self._image = index

    def callback(self, step, steps, _seconds):
        if steps <= 0:
            return
        done = (self._image + min(step, steps) / steps) / self._images
        overall = min(self.total, math.ceil(round(done * self.total, 6)))
        if overall > self.reported:
            self.reported = overall
            self._on_progress(overall, self.total)


def _sampling(sampler, schedule):
    method, implied = SAMPLERS[sampler]
    if implied is not None and schedule not in ("automatic", implied):
        raise invalid_input("scheduler", f"sampler {sampler!r} implies the {implied} schedule; "
                                         f"use scheduler automatic or {implied}")
    return method, implied or SCHEDULERS[schedule]


def _check_supported(request):
    if request.inpaint is not None:
        raise invalid_input("mask", f"the {NAME} engine does not inpaint; send the request with engine diffusers")
    if request.hires is not None:
        raise invalid_input("hires", f"the {NAME} engine has no hires fix; send the request with engine diffusers")
    for lora in request.loras:
        # The library reads LoRAs from `<lora:path:weight>` prompt tags.
        if ":" in lora.path or ">" in lora.path:
            raise invalid_input("loras", f"LoRA {lora.name!r}: {NAME} cannot read a path with ':' or '>' "
                                         f"({lora.path})")
        if not os.path.isfile(lora.path):
            raise invalid_input("loras", f"LoRA {lora.name!r}: no file at {lora.path}")


def _total_steps(request):
    # img2img denoises int(steps x strength) of the steps, as the diffusers engine does.
    if request.init_image is not None:
        return max(1, min(int(request.steps * request.denoising_strength), request.steps))
    return request.steps


def _architecture(request):
    """The architecture the files are, when their tensor names tell; stable-diffusion.cpp
    infers it itself either way. Files that are no checkpoint it serves end the load here."""
    names = _tensor_names(request)
    if names is None:
        return request.architecture
    detected = detect_architecture(names)
    if detected in ARCHITECTURES:
        return detected
    if detected is None and request.format == "gguf":
        return request.architecture  # converted GGUF files may carry sd.cpp's own tensor names
    found = "an SDXL refiner checkpoint" if detected == "sdxl_refiner" else "no Stable Diffusion checkpoint"
    raise RunnerError("unsupported_model", f"{request.path} is {found}: {NAME} in Easel serves "
                                           f"{', '.join(ARCHITECTURES)} checkpoints")


def _tensor_names(request):
    """The tensor names of a GGUF or .safetensors file, read from its header; None for others."""
    if request.format == "gguf":
        return gguf_tensor_names(request.path)
    if not request.path.lower().endswith(".safetensors"):
        return None
    from safetensors import safe_open
    try:
        with safe_open(request.path, framework="numpy") as f:
            return list(f.keys())
    except Exception as exc:
        raise RunnerError("model_load_failed", f"cannot read {request.path}: {exc}") from None