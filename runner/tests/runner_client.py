"""Drives a real `python -m easel_runner` process over its pipes, as the server does."""

import base64
import io
import os
import pathlib
import queue
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image

from easel_runner.protocol import ProtocolError, encode_frame, read_frame

RUNNER_DIR = pathlib.Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 180
REPLY_TIMEOUT = 120
_END = object()


def runner_env(extra_path=()):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, extra_path), str(RUNNER_DIR)]),
                HF_HUB_OFFLINE="1")


class Runner:
    def __init__(self, log_path, extra_path=(), arguments=()):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "easel_runner", *arguments], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, env=runner_env(extra_path),
                                     cwd=log_path.parent)
        self._frames = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while (message := read_frame(self.proc.stdout)) is not None:
                self._frames.put(message)
        except ProtocolError as exc:
            self._frames.put(exc)
        self._frames.put(_END)

    def send(self, message):
        self.send_raw(encode_frame(message))

    def send_raw(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def recv(self, timeout=REPLY_TIMEOUT):
        try:
            item = self._frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no frame within {timeout} s\n{self.log_tail()}") from None
        if item is _END:
            raise AssertionError(f"runner output ended (exit {self.proc.poll()})\n{self.log_tail()}")
        if isinstance(item, ProtocolError):
            raise AssertionError(f"malformed frame from the runner: {item}\n{self.log_tail()}")
        return item

    def reply_to(self, request_id, timeout=REPLY_TIMEOUT):
        """Frames up to the final reply to `request_id`: (reply, the frames before it)."""
        deadline = time.monotonic() + timeout
        before = []
        while True:
            frame = self.recv(max(0.0, deadline - time.monotonic()))
            if frame.get("id") == request_id and frame["type"] not in ("progress", "pong"):
                return frame, before
            before.append(frame)

    def request(self, message, timeout=REPLY_TIMEOUT):
        self.send(message)
        return self.reply_to(message["id"], timeout)

    def wait_exit(self, timeout=30):
        return self.proc.wait(timeout=timeout)

    def log_text(self):
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines=40):
        return "runner stderr:\n" + "\n".join(self.log_text().splitlines()[-lines:])

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def start(log_path, extra_path=(), arguments=()):
    runner = Runner(log_path, extra_path, arguments)
    hello = runner.recv(STARTUP_TIMEOUT)
    assert hello["type"] == "hello", hello
    return runner, hello


def load_message(request_id, path, fmt="diffusers", architecture="sd1", config_dir=None, model_id="tiny"):
    return {"type": "load", "id": request_id,
            "model": {"id": model_id, "path": str(path), "format": fmt, "architecture": architecture,
                      "config_dir": None if config_dir is None else str(config_dir)},
            "device": "auto", "dtype": "auto", "threads": 0}


def generate_message(request_id, seeds=(1, 2), steps=2, sampler="Euler", output_format="png", size=64, **extra):
    return {"type": "generate", "id": request_id, "prompt": "a lighthouse at dusk", "negative_prompt": "",
            "width": size, "height": size, "steps": steps, "cfg_scale": 7.0, "sampler": sampler,
            "seeds": list(seeds), "output_format": output_format, "quality": 90,
            "infotexts": [f"a lighthouse at dusk\nSteps: {steps}, Seed: {s}" for s in seeds], **extra}


def decode(image):
    return Image.open(io.BytesIO(base64.b64decode(image["data"])))


def png_base64(image):
    """A PIL image or an (h, w, 3) pixel array as the base64 PNG a request carries."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image.astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def pixels(result):
    return [np.asarray(decode(image).convert("RGB"), dtype=np.int16) for image in result["images"]]
