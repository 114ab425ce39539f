"""The diffusers engine: loads one Stable Diffusion 1.x/2.x/XL pipeline and generates with
it: txt2img, img2img, inpainting and hires fix, with LoRAs."""

import gc
import json
import math
import os
import pathlib
import platform
import sys
import time
import traceback

import torch
import transformers
from diffusers import (AutoPipelineForImage2Image, AutoPipelineForInpainting, StableDiffusionPipeline,
                       StableDiffusionXLPipeline)
from diffusers.utils import logging as diffusers_logging
from PIL import Image
from safetensors import safe_open

from . import imaging, inpainting, ldm, messages, preview, samplers
from .errors import RunnerError
from .loras import LoraCache
from .resources import resident_bytes
from .tokenizer import pipeline_tokenizers

ARCHITECTURES = ("sd1", "sd2", "sdxl")
# merged_jobs: `generate` takes `members`, several jobs in one call.
FEATURES = ("txt2img", "img2img", "inpaint", "hires", "lora", "merged_jobs")
CONFIGS = pathlib.Path(__file__).parent / "configs"
_SUPPORTED = "this engine serves Stable Diffusion 1.x (sd1), 2.x (sd2) and SDXL base (sdxl) models"
_PIPELINES = {"sd1": StableDiffusionPipeline, "sd2": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline}
_FOLDER_CLASSES = {"StableDiffusionPipeline": None, "StableDiffusionXLPipeline": "sdxl"}
_WARMUP_SIZE = 64
_LATENT_MODES = {"Latent": {"mode": "bilinear"}, "Latent (nearest)": {"mode": "nearest"},
                 "Latent (bicubic)": {"mode": "bicubic"},
                 "Latent (antialiased)": {"mode": "bilinear", "antialias": True}}
_IMAGE_FILTERS = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}

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
            "torch_version": torch.__version__, "samplers": list(samplers.available()),
            "schedulers": list(samplers.SCHEDULERS), "upscalers": list(messages.UPSCALERS),
            "architectures": list(ARCHITECTURES), "features": list(FEATURES)}


class _Model:
    """A loaded pipeline, the img2img and inpaint pipelines that share its weights, and
    its LoRAs."""

    def __init__(self, pipe, architecture):
        self.architecture = architecture
        self.txt2img = pipe
        self.img2img = AutoPipelineForImage2Image.from_pipe(pipe)
        self.inpaint = AutoPipelineForInpainting.from_pipe(pipe)
        for each in (self.img2img, self.inpaint):
            each.set_progress_bar_config(disable=True)
        self.scheduler_config = pipe.scheduler.config
        self.loras = LoraCache(pipe)


class DiffusersEngine:
    def __init__(self):
        self._model = None
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
            model = _Model(pipe, architecture)
            warmup_seconds = _warm_up(pipe) if request.warm_up else None
        except Exception as exc:
            raise _runner_error(exc, "model_load_failed") from exc
        self._model = model
        self.load_count += 1
        return {"model_id": request.model_id, "architecture": architecture, "device": device.type,
                "dtype": str(dtype).removeprefix("torch."), "load_seconds": round(time.monotonic() - started, 3),
                "warmup_seconds": warmup_seconds, "load_count": self.load_count, "memory_bytes": _memory_bytes(device),
                "gpu_memory_bytes": _gpu_memory_bytes(device)}

    def generate(self, request, on_progress, cancelled):
        """The encoded images of `request`; `on_progress(step, total, previews)` after each step,
        `previews` being None or one `preview` object (or None) per member."""
        model = self._model
        if model is None:
            raise RunnerError("not_loaded", "generate before a successful load")
        started = time.monotonic()
        progress = _Progress(request, model.architecture, on_progress, cancelled)
        try:
            progress.check_cancelled()
            try:
                model.loras.activate(request.loras)
                generated = _generate(model, request, progress)
            finally:
                model.loras.deactivate()
            images = [imaging.encoded_result(image, seed, request, infotext)
                      for image, seed, infotext in zip(generated, request.seeds, request.infotexts)]
            if request.merged:
                for image, member in zip(images, request.image_members):
                    image["member"] = member
        except _Cancelled as exc:
            raise RunnerError("cancelled", f"cancelled at step {exc.step} of {progress.total}") from None
        except Exception as exc:
            raise _runner_error(exc, "engine_error") from exc
        return images, round(time.monotonic() - started, 3)

    @property
    def pipeline(self):
        """The loaded txt2img pipeline (None before a load), for benchmarks that time its parts."""
        return self._model.txt2img if self._model is not None else None

    def _release(self):
        if self._model is not None:
            self._model = None
            _free_memory()


def _warm_up(pipe):
    """Runs one tiny generation so that the first request does not pay for kernel
    selection, allocator growth and oneDNN primitive creation; its seconds."""
    started = time.monotonic()
    pipe(prompt="", width=_WARMUP_SIZE, height=_WARMUP_SIZE, num_inference_steps=1, output_type="pil")
    return round(time.monotonic() - started, 3)


def pass_steps(request):
    """The denoising steps each pass of `request` runs: img2img and the hires pass run
    int(steps x denoising_strength) of their steps, as diffusers and A1111 do."""
    if request.init_image is not None:
        return [min(int(request.steps * request.denoising_strength), request.steps)]
    if request.hires is None:
        return [request.steps]
    hires_steps = request.hires.steps or request.steps
    return [request.steps, int(hires_steps * request.hires.denoising_strength)]


class _Progress:
    """Counts steps across the passes of one generation, sends progress and previews,
    and stops the pipeline at a step boundary once cancelled."""

    def __init__(self, request, architecture, on_progress, cancelled):
        self._request = request
        self._architecture = architecture
        self._on_progress = on_progress
        self._cancelled = cancelled
        self._passes = pass_steps(request)
        self.total = sum(self._passes)
        self._offset = self._steps = self._reported = 0

    def begin_pass(self):
        self.check_cancelled()
        self._offset += self._steps
        self._steps = self._passes[0]
        self._passes = self._passes[1:]
        return self._steps

    def check_cancelled(self):
        if self._cancelled.is_set():
            raise _Cancelled(self._reported)

    def on_step_end(self, pipe, index, timestep, tensors):
        # Some schedulers run more than one model call per step (Heun, DPM2: 2n-1,
        # PNDM: n+1); progress counts the requested steps.
        step = self._offset + math.ceil((index + 1) * self._steps / pipe.num_timesteps)
        if step > self._reported:
            self._reported = step
            self._on_progress(step, self.total,
                              _previews(self._request, step, self.total, tensors, self._architecture))
        self.check_cancelled()
        return tensors


def _generate(model, request, progress):
    """The PIL images of `request`, one per seed."""
    if request.inpaint is not None:
        prepared = inpainting.prepare(request.init_image, request.inpaint, request.resize_mode, request.width,
                                      request.height)
        images = _run_pass(model, model.inpaint, request, progress, image=prepared.image,
                           mask_image=prepared.mask, width=request.width, height=request.height,
                           strength=request.denoising_strength, num_inference_steps=request.steps)
        return [inpainting.paste_back(image, prepared) for image in images]
    if request.init_image is not None:
        image = imaging.resize_image(request.resize_mode, request.init_image, request.width, request.height)
        return _run_pass(model, model.img2img, request, progress, image=image,
                         strength=request.denoising_strength, num_inference_steps=request.steps)
    hires = request.hires
    latent_upscale = hires is not None and hires.upscaler in _LATENT_MODES
    first = _run_pass(model, model.txt2img, request, progress, width=request.width, height=request.height,
                      num_inference_steps=request.steps, output_type="latent" if latent_upscale else "pil")
    if hires is None:
        return first
    if latent_upscale:
        scale = model.txt2img.vae_scale_factor
        upscaled = torch.nn.functional.interpolate(
            first, size=(hires.height // scale, hires.width // scale), **_LATENT_MODES[hires.upscaler])
    else:
        upscaled = [image.resize((hires.width, hires.height), _IMAGE_FILTERS[hires.upscaler]) for image in first]
    return _run_pass(model, model.img2img, request, progress, image=upscaled, strength=hires.denoising_strength,
                     num_inference_steps=hires.steps or request.steps)


def _run_pass(model, pipe, request, progress, **arguments):
    """One pipeline call for the whole batch; a fresh scheduler and fresh generators each
    pass, so that every pass depends on the seeds alone."""
    progress.begin_pass()
    pipe.scheduler = samplers.make_scheduler(request.sampler, model.scheduler_config, request.scheduler)
    arguments.setdefault("output_type", "pil")
    output = pipe(guidance_scale=request.cfg_scale,
                  generator=[torch.Generator("cpu").manual_seed(seed) for seed in request.seeds],
                  callback_on_step_end=progress.on_step_end, **_prompts(request), **arguments)
    return output.images


def _prompts(request):
    """The pipeline's prompt arguments: one prompt for a single job's images, else one
    prompt per image, so that each member's images follow its own prompts."""
    if not request.merged:
        member = request.members[0]
        return {"prompt": member.prompt, "negative_prompt": member.negative_prompt,
                "num_images_per_prompt": len(member.seeds)}
    return {"prompt": [member.prompt for member in request.members for _ in member.seeds],
            "negative_prompt": [member.negative_prompt for member in request.members for _ in member.seeds]}


def _previews(request, step, total, tensors, architecture="sd1"):
    """The previews for `step` when they are due, else None: one per member, of its first
    image. A failure only costs that preview (None in its place)."""
    every = request.preview_every
    if every <= 0 or step % every or step >= total:
        return None
    return [_preview(tensors, start, step, total, architecture) for start in request.member_starts]


def _preview(tensors, image, step, total, architecture):
    try:
        return preview.make_preview(tensors["latents"][image:image + 1], architecture)
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
    if request.format == "gguf":
        raise RunnerError("unsupported_model", f"{request.path} is a GGUF file: the stable-diffusion.cpp engine serves it")
    if declared is not None and declared not in ARCHITECTURES:
        raise RunnerError("unsupported_model", f"architecture {declared!r} is not supported: {_SUPPORTED}")
    if request.format == "diffusers":
        return _folder_architecture(pathlib.Path(request.path), declared)
    detected = ldm.detect_architecture(_tensor_names(request.path))
    if detected not in ARCHITECTURES:
        found = "an SDXL refiner checkpoint" if detected == "sdxl_refiner" else "no Stable Diffusion checkpoint"
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
    if kind not in _FOLDER_CLASSES:
        raise RunnerError("unsupported_model", f"{path} holds a {kind}: {_SUPPORTED}")
    if _FOLDER_CLASSES[kind] is not None:
        detected = _FOLDER_CLASSES[kind]
        if declared is not None and declared != detected:
            raise RunnerError("model_load_failed", f"{path} was declared {declared} but holds a {kind}")
        return detected
    if declared == "sdxl":
        raise RunnerError("model_load_failed", f"{path} was declared sdxl but holds a {kind}")
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
    # The tokenizers are always the ones the runner ships.
    options = {"dtype": dtype, "local_files_only": True, **pipeline_tokenizers(architecture)}
    if architecture == "sdxl":
        options["add_watermarker"] = False
    else:  # the safety checker is off
        options.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline_class = _PIPELINES[architecture]
    if request.format == "diffusers":
        return pipeline_class.from_pretrained(request.path, **options)
    config_dir = request.config_dir or str(CONFIGS / architecture)
    if not os.path.isdir(config_dir):
        # diffusers would take the name for a model hub repository.
        raise RunnerError("model_load_failed", f"config_dir {config_dir} is not a folder")
    return pipeline_class.from_single_file(request.path, config=config_dir, **options)


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
    resident = resident_bytes()
    if device.type == "cuda":
        resident += torch.cuda.memory_allocated(device)
    return resident
