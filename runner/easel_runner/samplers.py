"""AUTOMATIC1111 sampler names mapped to diffusers schedulers."""

import functools

import diffusers

# name -> (scheduler class, config overrides). The Karras flag is set either way so that a
# model whose scheduler config enables it does not change what a plain name means.
_SAMPLERS = {
    "Euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler",
                     {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "DDIM": ("DDIMScheduler", {}),
    "PNDM": ("PNDMScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {"use_karras_sigmas": False}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "Heun": ("HeunDiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM2": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": False}),
    "UniPC": ("UniPCMultistepScheduler", {"use_karras_sigmas": False}),
    "DEIS": ("DEISMultistepScheduler", {"use_karras_sigmas": False}),
}

# Stable Diffusion's training noise schedule, used to probe which schedulers work here.
_PROBE_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                 "beta_schedule": "scaled_linear"}


def make_scheduler(name, config):
    class_name, overrides = _SAMPLERS[name]
    return getattr(diffusers, class_name).from_config(config, **overrides)


@functools.cache
def available():
    """The sampler names whose scheduler works with the installed packages.

    diffusers replaces schedulers whose optional dependency is missing (LMS needs scipy)
    by placeholders that raise on use.
    """
    names = []
    for name in _SAMPLERS:
        try:
            make_scheduler(name, _PROBE_CONFIG).set_timesteps(4)
        except ImportError:
            continue
        names.append(name)
    return tuple(names)
