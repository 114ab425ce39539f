"""Real Easel processes for the benchmarks: `easel serve` on a free port, the one-shot
`easel generate`, and their memory read from /proc."""

import json
import pathlib
import re
import signal
import socket
import subprocess
import time

import requests


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_bytes(pid):
    """Resident set size (VmRSS) of a live process, or None once it is gone."""
    return _status_field(pid, "VmRSS")


def peak_rss_bytes(pid):
    """Highest resident set size (VmHWM) the process has had."""
    return _status_field(pid, "VmHWM")


def _status_field(pid, name):
    try:
        text = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


class Easel:
    """The `easel` binary with the settings every benchmark process shares."""

    def __init__(self, binary, runner_venv, models_dir, model_id, workdir):
        self.binary = pathlib.Path(binary)
        self.runner_venv = pathlib.Path(runner_venv)
        self.models_dir = pathlib.Path(models_dir)
        self.model_id = model_id
        self.workdir = pathlib.Path(workdir)

    def common_flags(self, data_dir):
        return ["--models-dir", str(self.models_dir), "--data-dir", str(data_dir),
                "--runner-venv", str(self.runner_venv), "--no-demo-model"]

    def supports(self, subcommand, flag):
        """Whether `easel SUBCOMMAND --help` lists `flag` (a setting another branch may add)."""
        help_text = subprocess.run([str(self.binary), subcommand, "--help"], capture_output=True, text=True,
                                   check=True).stdout
        return re.search(rf"{re.escape(flag)}\b", help_text) is not None

    def generate(self, generation, output):
        """Runs `easel generate` once; returns its wall seconds and the seconds it printed."""
        command = [str(self.binary), "generate", "--model", self.model_id, "-o", str(output),
                   *self.common_flags(self.workdir / "cli-data")]
        for field, value in generation.items():
            command += [f"--{field.replace('_', '-')}={value}"]
        started = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - started
        if finished.returncode != 0:
            raise RuntimeError(f"easel generate failed ({finished.returncode}): {finished.stderr[-2000:]}")
        printed = re.search(r"seconds: (.*)$", finished.stdout, re.MULTILINE).group(1)
        return wall, {name: float(value) for name, value in re.findall(r"(\w+) ([\d.]+)", printed)}

    def server(self, *flags, preload=True):
        return Server(self, [*flags] + ([] if preload else ["--no-preload"]))


class Server:
    """One `easel serve`; a context manager that starts it and stops it."""

    def __init__(self, easel, flags):
        self.easel = easel
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir = easel.workdir / f"server-{self.port}"
        data_dir.mkdir(parents=True)
        self.log_path = data_dir / "easel.log"
        self.command = [str(easel.binary), "serve", "--port", str(self.port), "--default-model", easel.model_id,
                        "--log-level", "warning", *easel.common_flags(data_dir), *flags]
        self.process = None
        self.started = None

    def __enter__(self):
        self._log = open(self.log_path, "wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    @property
    def pid(self):
        return self.process.pid

    def wait_ready(self, timeout=1800, interval=0.01):
        """Seconds from the start until `/health` answered 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"easel serve exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if requests.get(self.url + "/health", timeout=5).status_code == 200:
                    return time.perf_counter() - self.started
            except requests.ConnectionError:
                pass
            time.sleep(interval)
        raise RuntimeError(f"easel serve was not ready within {timeout} s: {self.log_tail()}")

    def runner_pid(self):
        models = requests.get(self.url + "/v1/models", timeout=30).json()["data"]
        return next(m for m in models if m["id"] == self.easel.model_id)["runtime"].get("runner_pid")

    def txt2img_png(self, generation, session=requests):
        """One synchronous generation as PNG bytes; returns (wall seconds, engine seconds)."""
        started = time.perf_counter()
        response = session.post(self.url + "/v1/txt2img", json=generation, headers={"Accept": "image/png"},
                                timeout=3600)
        wall = time.perf_counter() - started
        response.raise_for_status()
        timing = dict(re.findall(r"(\w+);dur=([\d.]+)", response.headers["Server-Timing"]))
        return wall, float(timing["engine"]) / 1000

    def job_png(self, generation):
        """One job: submit, follow its events to the end, download the image; returns
        (wall seconds, engine seconds)."""
        started = time.perf_counter()
        response = requests.post(self.url + "/v1/jobs", json=generation, timeout=60)
        response.raise_for_status()
        job_id = response.json()["id"]
        with requests.get(f"{self.url}/v1/jobs/{job_id}/events", stream=True, timeout=3600) as events:
            final = _final_event(events.iter_lines(decode_unicode=True))
        if final.get("type") != "succeeded":
            raise RuntimeError(f"job {job_id} ended {final.get('type')}: {final}")
        job = final["job"]
        requests.get(self.url + job["images"][0]["url"], timeout=60).raise_for_status()
        return time.perf_counter() - started, job["timings"]["engine_seconds"]

    def log_tail(self, lines=20):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _final_event(lines):
    for line in lines:
        if line.startswith("data:"):
            event = json.loads(line[5:])
            if event.get("type") in ("succeeded", "failed", "cancelled"):
                return event
    return {}
