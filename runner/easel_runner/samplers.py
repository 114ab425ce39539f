"""AUTOMATIC1111 sampler and schedule type names mapped to diffusers schedulers."""

import functools
import inspect

import diffusers

from .errors import invalid_input

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

# A1111's schedule types -> the diffusers config flags that give them. `automatic` keeps
# the sampler's own sigmas; sgm_uniform is SGM's uniform spacing that ends at the last
# training timestep ("trailing").
_SCHEDULES = {
    "automatic": {},
    "karras": {"use_karras_sigmas": True, "use_exponential_sigmas": False},
    "exponential": {"use_karras_sigmas": False, "use_exponential_sigmas": True},
    "sgm_uniform": {"use_karras_sigmas": False, "use_exponential_sigmas": False, "timestep_spacing": "trailing"},
}
SCHEDULERS = tuple(_SCHEDULES)

# Stable Diffusion's training noise schedule, used to probe which schedulers work here.
_PROBE_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                 "beta_schedule": "scaled_linear"}


def make_scheduler(name, config, schedule="automatic"):
    """The scheduler for sampler `name` with schedule type `schedule`; a combination the
    scheduler class cannot do is an `invalid_input` naming `scheduler`."""
    class_name, overrides = _SAMPLERS[name]
    scheduler_class = getattr(diffusers, class_name)
    return scheduler_class.from_config(config, **{**overrides, **_schedule_flags(name, scheduler_class, schedule)})


def _schedule_flags(name, scheduler_class, schedule):
    if schedule == "automatic":
        return {}
    _, overrides = _SAMPLERS[name]
    if overrides.get("use_karras_sigmas") and schedule != "karras":
        # "DPM++ 2M Karras" names its schedule already.
        raise invalid_input("scheduler", f"sampler {name!r} always uses the karras schedule: use scheduler "
                                         f"'automatic' or 'karras', or the sampler without 'Karras' in its name")
    flags = _SCHEDULES[schedule]
    accepted = inspect.signature(scheduler_class.__init__).parameters
    # Only the flags that turn something on must be supported; the others are defaults.
    needed = {k for k, v in flags.items() if v not in (False, None)}
    if not needed <= set(accepted):
        raise invalid_input("scheduler", f"sampler {name!r} cannot use the {schedule} schedule; use scheduler "
                                         f"'automatic' or another sampler (Euler, DPM++ 2M, ...)")
    return {k: v for k, v in flags.items() if k in accepted}


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
