"""A runner that dies or hangs costs one request, never the server."""

import concurrent.futures
import os
import signal

import pytest

from easel_server import EaselServer, wait_until


@pytest.fixture(scope="module")
def fragile_server(tiny_models, tmp_path_factory):
    easel = EaselServer(tmp_path_factory.mktemp("fragile"), tiny_models, "--default-model", "tiny",
                        "--runner-heartbeat-timeout", "3").start()
    try:
        yield easel.wait_ready()
    finally:
        easel.stop()


def generating_runner_pid(server):
    """Waits until the tiny model's runner is past its first step and returns its pid."""
    def busy():
        runtime = server.model("tiny")["runtime"]
        return runtime["state"] == "generating" and (runtime.get("step") or 0) >= 1 and runtime["runner_pid"]
    return wait_until(busy, 60, "the runner never started generating")


def long_generation(server):
    pool = concurrent.futures.ThreadPoolExecutor(1)
    return pool, pool.submit(server.txt2img, prompt="a long one", width=256, height=256, steps=150, seed=1)


@pytest.mark.parametrize("kill_signal, status, code", [
    (signal.SIGKILL, 502, "runner_crashed"),
    (signal.SIGSTOP, 504, "runner_timeout"),
])
def test_lost_runner_fails_its_request_and_the_next_one_succeeds(fragile_server, kill_signal, status, code):
    old_count = fragile_server.model("tiny")["runtime"]["load_count"]
    pool, pending = long_generation(fragile_server)
    pid = generating_runner_pid(fragile_server)
    os.kill(pid, kill_signal)
    response = pending.result(timeout=120)
    pool.shutdown()

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert "runner" in error["message"]
    if kill_signal == signal.SIGKILL:
        assert "signal 9 (SIGKILL)" in error["message"]
    assert fragile_server.health().status_code == 200

    after = fragile_server.txt2img(prompt="after the crash", width=64, height=64, steps=2, seed=2)
    assert after.status_code == 200, after.text
    assert after.json()["runner"]["pid"] != pid
    assert after.json()["runner"]["load_count"] == old_count + 1
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), 30, f"runner {pid} still alive")


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True
