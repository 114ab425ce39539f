"""Test-only: makes every image encoding print to stdout, as chatty libraries do.

Put on PYTHONPATH of a runner to check that such output never reaches the protocol pipe.
"""

import os

import PIL.Image

NOISE = "noise-from-a-library"
_save = PIL.Image.Image.save


def _noisy_save(self, *args, **kwargs):
    print(f"{NOISE} (print)")
    os.write(1, f"{NOISE} (fd 1)\n".encode())
    return _save(self, *args, **kwargs)


PIL.Image.Image.save = _noisy_save
