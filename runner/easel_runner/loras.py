"""LoRA adapters applied to one generation at a time.

A LoRA file is loaded once into the pipeline's UNet and text encoders (through diffusers'
PEFT integration, which reads both the kohya format A1111 users download and the
diffusers/PEFT format) and kept, keyed by path and modification time. A generation turns
on the adapters it names with their weights; afterwards all adapters are disabled, and a
disabled adapter leaves every layer computing exactly what it computed before.
"""

import collections
import os

from .errors import invalid_input

MAX_CACHED = 8


class LoraCache:
    def __init__(self, pipe):
        self._pipe = pipe
        self._loaded = collections.OrderedDict()  # path -> ((mtime_ns, size), adapter name)
        self._next_index = 0

    def activate(self, loras):
        """Turns on exactly `loras` (messages.Lora) for the next pipeline calls."""
        if not loras:
            self.deactivate()
            return
        adapters = [self._adapter(lora) for lora in loras]
        self._pipe.enable_lora()
        self._pipe.set_adapters(adapters, adapter_weights=[lora.weight for lora in loras])

    def deactivate(self):
        if self._loaded:
            self._pipe.disable_lora()

    def _adapter(self, lora):
        try:
            info = os.stat(lora.path)
        except OSError as exc:
            raise invalid_input("loras", f"LoRA {lora.name!r}: cannot read {lora.path}: {exc.strerror}") from None
        stamp = (info.st_mtime_ns, info.st_size)
        cached = self._loaded.get(lora.path)
        if cached is not None and cached[0] == stamp:
            self._loaded.move_to_end(lora.path)
            return cached[1]
        if cached is not None:  # the file changed since it was loaded
            self._forget(lora.path)
        adapter = f"lora_{self._next_index}"
        self._next_index += 1
        try:
            self._pipe.load_lora_weights(lora.path, adapter_name=adapter)
        except Exception as exc:
            self._delete(adapter)
            raise invalid_input("loras", f"LoRA {lora.name!r} ({lora.path}) cannot be used with this model: "
                                         f"{type(exc).__name__}: {exc}") from None
        if not any(adapter in names for names in self._pipe.get_list_adapters().values()):
            raise invalid_input("loras", f"LoRA {lora.name!r} ({lora.path}) matches no layer of this model: "
                                         f"it was made for another architecture")
        self._loaded[lora.path] = (stamp, adapter)
        while len(self._loaded) > MAX_CACHED:
            self._forget(next(iter(self._loaded)))
        return adapter

    def _forget(self, path):
        _, adapter = self._loaded.pop(path)
        self._delete(adapter)

    def _delete(self, adapter):
        present = [c for c, names in self._pipe.get_list_adapters().items() if adapter in names]
        if present:
            self._pipe.delete_adapters(adapter)
