"""The diffusers engine: loads one Stable Diffusion 1.x/2.x pipeline and generates with it."""

import base64
import gc
import json
import math
import os
import pathlib
import platform
import resource
import sys
import time
import traceback

import torch
import transformers
from diffusers import StableDiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from safetensors import safe_open

from . import imaging, ldm, preview, samplers
from .errors import RunnerError
from .tokenizer import clip_tokenizer

ARCHITECTURES = ("sd1", "sd2")
CONFIGS = pathlib.Path(__file__).parent / "configs"
_SUPPORTED = "this engine serves Stable Diffusion 1.x (sd1) and 2.x (sd2) models"
_WARMUP_SIZE = 64

# Loading progress bars would only clutter the server's log with carriage returns.
diffusers_logging.disable_progress_bar()
transformers.utils.logging.disable_progress_bar()


class _Cancelled(Exception):
    """Raised from the step callback to stop the pipeline at a step boundary."""

    def __init__(self, step):
        super().__init__(step)
        self.step = step


def describe():
    """The engine's part of the `hello` message."""
    if torch.cuda.is_available():
        device, device_name = "cuda", torch.cuda.get_device_name(0)
    else:
        device, device_name = "cpu", f"{platform.machine()} ({os.cpu_count()} threads)"
    return {"engines": ["diffusers"], "device": device, "device_name": device_name,
            "torch_version": torch.__version__, "samplers": list(samplers.available())}


class DiffusersEngine:
    def __init__(self):
        self._pipe = None
        self._scheduler_config = None
        self.load_count = 0

    def load(self, request):
        started = time.monotonic()
        device = _device(request.device)
        dtype = _dtype(request.dtype, device)
        if request.threads > 0:
            torch.set_num_threads(request.threads)
        # Checked before the current model is dropped: a refused load changes nothing.
        architecture = _architecture(request)
        self._release()
        try:
            pipe = _open_pipeline(request, architecture, dtype)
            pipe.to(device)
            pipe.set_progress_bar_config(disable=True)
            scheduler_config = pipe.scheduler.config
            # The first call after a load pays for kernel selection and allocator growth.
            pipe(prompt="", width=_WARMUP_SIZE, height=_WARMUP_SIZE, num_inference_steps=1, output_type="pil")
        except Exception as exc:
            raise _runner_error(exc, "model_load_failed") from exc
        self._pipe, self._scheduler_config = pipe, scheduler_config
        self.load_count += 1
        return {"model_id": request.model_id, "architecture": architecture, "device": device.type,
                "dtype": str(dtype).removeprefix("torch."), "load_seconds": round(time.monotonic() - started, 3),
                "load_count": self.load_count, "memory_bytes": _memory_bytes(device),
                "gpu_memory_bytes": _gpu_memory_bytes(device)}

    def generate(self, request, on_progress, cancelled):
        """The encoded images of `request`; `on_progress(step, total, preview)` after each step,
        `preview` being None or the `preview` object of the `progress` frame."""
        if self._pipe is None:
            raise RunnerError("not_loaded", "generate before a successful load")
        started = time.monotonic()
        total = request.steps
        reported = 0

        def on_step_end(pipe, index, timestep, tensors):
            # Some schedulers run more than one model call per step (Heun, DPM2: 2n-1,
            # PNDM: n+1); progress counts the requested steps.
            nonlocal reported
            step = math.ceil((index + 1) * total / pipe.num_timesteps)
            if step > reported:
                reported = step
                on_progress(step, total, _preview(request, step, total, tensors))
            if cancelled.is_set():
                raise _Cancelled(step)
            return tensors

        try:
            if cancelled.is_set():
                raise _Cancelled(0)
            self._pipe.scheduler = samplers.make_scheduler(request.sampler, self._scheduler_config)
            output = self._pipe(
                prompt=request.prompt, negative_prompt=request.negative_prompt, width=request.width,
                height=request.height, num_inference_steps=total, guidance_scale=request.cfg_scale,
                num_images_per_prompt=len(request.seeds),
                generator=[torch.Generator("cpu").manual_seed(seed) for seed in request.seeds],
                output_type="pil", callback_on_step_end=on_step_end)
            images = [_encoded(image, seed, request, infotext)
                      for image, seed, infotext in zip(output.images, request.seeds, request.infotexts)]
        except _Cancelled as exc:
            raise RunnerError("cancelled", f"cancelled at step {exc.step} of {total}") from None
        except Exception as exc:
            raise _runner_error(exc, "engine_error") from exc
        return images, round(time.monotonic() - started, 3)

    def _release(self):
        if self._pipe is not None:
            self._pipe = self._scheduler_config = None
            _free_memory()


def _preview(request, step, total, tensors):
    """The preview for `step` when one is due, else None; a failure only costs the preview."""
    every = request.preview_every
    if every <= 0 or step % every or step >= total:
        return None
    try:
        return preview.make_preview(tensors["latents"])
    except Exception:
        print(f"easel-runner: preview at step {step} of {total} failed, skipped:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return None


def _device(requested):
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RunnerError("model_load_failed", f"device 'cuda' requested but CUDA is not available "
                                               f"(torch {torch.__version__})")
    return torch.device(requested)


def _dtype(requested, device):
    if requested == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, requested)


def _architecture(request):
    """The architecture the files are; unsupported ones end the load here."""
    declared = request.architecture
    if declared is not None and declared not in ARCHITECTURES:
        raise RunnerError("unsupported_model", f"architecture {declared!r} is not supported: {_SUPPORTED}")
    if request.format == "diffusers":
        return _folder_architecture(pathlib.Path(request.path), declared)
    detected = ldm.detect_architecture(_tensor_names(request.path))
    if detected not in ARCHITECTURES:
        found = "an SDXL checkpoint" if detected == "sdxl" else "no Stable Diffusion 1.x/2.x checkpoint"
        raise RunnerError("unsupported_model", f"{request.path} is {found}: {_SUPPORTED}")
    if declared is not None and declared != detected:
        raise RunnerError("model_load_failed",
                          f"{request.path} was declared {declared} but its tensors are {detected}")
    return detected


def _folder_architecture(path, declared):
    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise RunnerError("model_load_failed", f"not a diffusers folder: {exc}") from None
    kind = index.get("_class_name")
    if kind != "StableDiffusionPipeline":
        raise RunnerError("unsupported_model", f"{path} holds a {kind}: {_SUPPORTED}")
    if declared is not None:
        return declared
    try:
        unet = json.loads((path / "unet" / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise RunnerError("model_load_failed", f"unreadable UNet config: {exc}") from None
    # SD 2.x conditions on OpenCLIP-H (1024 wide), SD 1.x on CLIP-L (768).
    return "sd2" if unet.get("cross_attention_dim") == 1024 else "sd1"


def _tensor_names(path):
    try:
        if path.lower().endswith(".safetensors"):
            with safe_open(path, framework="pt") as f:
                return list(f.keys())
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        while isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        return list(state) if isinstance(state, dict) else []
    except Exception as exc:
        raise RunnerError("model_load_failed", f"cannot read {path}: {exc}") from None


def _open_pipeline(request, architecture, dtype):
    # The safety checker is off; the tokenizer is always the one the runner ships.
    options = {"dtype": dtype, "local_files_only": True, "safety_checker": None,
               "feature_extractor": None, "requires_safety_checker": False,
               "tokenizer": clip_tokenizer(architecture)}
    if request.format == "diffusers":
        return StableDiffusionPipeline.from_pretrained(request.path, **options)
    config_dir = request.config_dir or str(CONFIGS / architecture)
    if not os.path.isdir(config_dir):
        # diffusers would take the name for a model hub repository.
        raise RunnerError("model_load_failed", f"config_dir {config_dir} is not a folder")
    return StableDiffusionPipeline.from_single_file(request.path, config=config_dir, **options)


def _encoded(image, seed, request, infotext):
    data = imaging.encode(image, request.output_format, request.quality, infotext)
    return {"seed": seed, "format": request.output_format, "width": image.width, "height": image.height,
            "data": base64.b64encode(data).decode("ascii")}


def _is_out_of_memory(exc):
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or (
        # The CPU allocator reports failure as a plain RuntimeError.
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def _runner_error(exc, code):
    """`exc` as the error its request ends with: `code`, or out_of_memory."""
    if isinstance(exc, RunnerError):
        return exc
    traceback.print_exc(file=sys.stderr)
    if _is_out_of_memory(exc):
        _free_memory()
        return RunnerError("out_of_memory", f"out of memory: {exc}")
    return RunnerError(code, f"{type(exc).__name__}: {exc}")


def _free_memory():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _gpu_memory_bytes(device):
    """CUDA memory the model holds (reserved by torch's allocator), or None on CPU."""
    return torch.cuda.memory_reserved(device) if device.type == "cuda" else None


def _memory_bytes(device):
    try:
        with open("/proc/self/statm") as f:
            resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        # No procfs (macOS): the peak resident set, which is bytes there.
        resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        resident += torch.cuda.memory_allocated(device)
    return resident
