"""Easel runner: serves one Stable Diffusion model over the framed stdin/stdout protocol."""

import os

# Forced before anything imports huggingface_hub, transformers or diffusers (they read
# these at import time): a runner must never reach a model hub.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ[_name] = "1"

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
