"""Start and stop a real `easel serve` for end-to-end tests."""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import requests

REPO = pathlib.Path(__file__).resolve().parents[1]
EASEL = pathlib.Path(os.environ.get("EASEL_BINARY", REPO / ".build" / "debug" / "easel"))
RUNNER_VENV = pathlib.Path(os.environ.get("EASEL_TEST_RUNNER_VENV", REPO / ".easel-test" / "runner-venv"))
RUNNER_PYTHON = RUNNER_VENV / "bin" / "python"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout, message, interval=0.05):
    """Polls `predicate` until it returns a truthy value, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s: {message}")


def submit(server, **fields):
    """POST /v1/jobs, expecting 202; returns the job (or batch) document."""
    response = requests.post(server.url + "/v1/jobs", json=fields, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def get_job(server, job_id):
    response = requests.get(f"{server.url}/v1/jobs/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_state(server, job_id, *states, timeout=120):
    return wait_until(lambda: (job := get_job(server, job_id))["state"] in states and job, timeout,
                      f"job {job_id} never reached {states}")


def make_tiny_model(folder, single_file=None, seed=0, arch="sd1"):
    """Writes the tiny random model with the runner's own tool (the real save and load paths)."""
    command = ["--out", str(folder), "--seed", str(seed)] + (["--arch", arch] if arch != "sd1" else [])
    if single_file:
        command += ["--single-file", str(single_file)]
    _run_tiny(command)


def make_tiny_lora(path, seed=0, arch="sd1"):
    """Writes a random kohya-format LoRA that fits the tiny model of `arch`."""
    _run_tiny(["--lora", str(path), "--seed", str(seed)] + (["--arch", arch] if arch != "sd1" else []))


def _run_tiny(arguments):
    env = dict(os.environ, PYTHONPATH=str(REPO / "runner"), HF_HUB_OFFLINE="1")
    subprocess.run([str(RUNNER_PYTHON), "-m", "easel_runner.tiny", *arguments], check=True, env=env, timeout=300,
                   stdout=subprocess.DEVNULL)


class EaselServer:
    """One `easel serve` process on a free port, with its log in `log_path`."""

    def __init__(self, workdir, models_dir, *args, env=None, port=None):
        self.workdir = pathlib.Path(workdir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / f"easel-{self.port}.log"
        self.command = [str(EASEL), "serve", "--port", str(self.port), "--models-dir", str(models_dir),
                        "--data-dir", str(self.workdir / "data"), "--runner-venv", str(RUNNER_VENV), *args]
        self.env = dict(os.environ, **(env or {}))
        self.process = None

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.command, cwd=self.workdir, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def health(self):
        try:
            return requests.get(self.url + "/health", timeout=5)
        except requests.ConnectionError:
            assert self.process.poll() is None, f"easel exited with {self.process.returncode}:\n{self.log_tail()}"
            return None

    def first_health(self, timeout=60):
        """The first answer of /health, whatever its status, once the port is open."""
        answers = []
        wait_until(lambda: (r := self.health()) is not None and not answers.append(r), timeout,
                   f"{self.url}/health never answered:\n{self.log_tail()}")
        return answers[0]

    def wait_ready(self, timeout=300):
        wait_until(lambda: (r := self.health()) is not None and r.status_code == 200, timeout,
                   f"{self.url}/health never answered 200:\n{self.log_tail()}", interval=0.2)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def txt2img(self, **fields):
        return requests.post(self.url + "/v1/txt2img", json=fields, timeout=300)

    def model(self, model_id):
        models = requests.get(self.url + "/v1/models", timeout=10).json()["data"]
        return next(m for m in models if m["id"] == model_id)


def runner_pids_of(pid):
    """Children of the server process (its runners)."""
    children = pathlib.Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


if __name__ == "__main__":
    sys.exit("import this module from the tests")
