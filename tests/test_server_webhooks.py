"""Webhooks end to end: a real server posts signed job results to a real HTTP listener."""

import hashlib
import hmac
import http.server
import json
import os
import stat
import threading
import time

import pytest
import requests

from easel_server import EaselServer, get_job, submit, wait_until

QUICK = {"prompt": "x", "width": 64, "height": 64, "steps": 2}
# Holds the model while a test queues another job behind it; small steps, so a cancel lands fast.
BLOCKER = {"prompt": "a blocker", "width": 64, "height": 64, "steps": 150}
SECRET = "s3cret"


class HookListener:
    """An HTTP server on 127.0.0.1 that records every POST and answers with the next
    status of `statuses` (the last one repeats); "hold" answers 200 once `release` is set."""

    def __init__(self, *statuses):
        self.statuses = list(statuses) or [200]
        self.deliveries = []  # dicts: path, headers, body, status, at
        self.release = threading.Event()
        self._lock = threading.Lock()
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with listener._lock:
                    index = len(listener.deliveries)
                    status = listener.statuses[min(index, len(listener.statuses) - 1)]
                    listener.deliveries.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                                "status": status, "at": time.monotonic()})
                if status == "hold":
                    listener.release.wait(timeout=60)
                    status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self):
        with self._lock:
            return list(self.deliveries)

    def wait_for(self, count, timeout=120):
        return wait_until(lambda: len(d := self.received()) >= count and d, timeout,
                          f"the listener never got {count} deliveries (got {len(self.received())})")

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener_factory():
    listeners = []

    def make(*statuses):
        listeners.append(HookListener(*statuses))
        return listeners[-1]

    yield make
    for listener in listeners:
        listener.close()


@pytest.fixture(scope="module")
def hook_server(tiny_models, tmp_path_factory):
    easel = EaselServer(tmp_path_factory.mktemp("webhooks"), tiny_models, "--default-model", "tiny",
                        "--webhook-secret", SECRET, "--webhook-attempts", "2").start()
    try:
        yield easel.wait_ready()
    finally:
        easel.stop()






def wait_for_webhook_status(server, job_id, prefix, timeout=120):
    return wait_until(lambda: ((job := get_job(server, job_id))["webhook"].get("status") or "").startswith(prefix) and job,
                      timeout, f"job {job_id}'s webhook status never started with {prefix!r}")


def expected_signature(secret, delivery):
    timestamp = delivery["headers"]["X-Easel-Timestamp"]
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + delivery["body"], hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def assert_signed(secret, delivery):
    headers = delivery["headers"]
    assert headers["Content-Type"] == "application/json"
    assert abs(int(headers["X-Easel-Timestamp"]) - time.time()) < 300
    assert hmac.compare_digest(headers["X-Easel-Signature"], expected_signature(secret, delivery))


def test_delivery_is_signed_retried_after_a_500_and_recorded(hook_server, listener_factory):
    listener = listener_factory(500, 200)
    job = submit(hook_server, seed=5, webhook=listener.url, **QUICK)
    assert job["webhook"]["url"] == listener.url and job["webhook"].get("status") is None

    first, second = listener.wait_for(2)
    for delivery in (first, second):
        assert delivery["path"] == "/hook"
        assert delivery["headers"]["X-Easel-Event"] == "job.succeeded"
        assert_signed(SECRET, delivery)
    assert [first["status"], second["status"]] == [500, 200]
    assert second["at"] - first["at"] >= 0.9, "the retry waits about 1 s"
    assert first["body"] == second["body"], "every attempt carries the same document"

    body = json.loads(second["body"])
    assert body["object"] == "job" and body["id"] == job["id"] and body["state"] == "succeeded"
    [image] = body["images"]
    assert image["url"] == f"/v1/images/{job['id']}-0" and image["seed"] == 5
    assert body["webhook"]["url"] == listener.url
    assert requests.get(hook_server.url + image["url"], timeout=30).status_code == 200

    done = wait_for_webhook_status(hook_server, job["id"], "delivered")
    assert done["webhook"]["status"] == "delivered (attempt 2, HTTP 200)"
    assert len(listener.received()) == 2


def test_a_tampered_body_does_not_verify(hook_server, listener_factory):
    listener = listener_factory(200)
    submit(hook_server, webhook=listener.url, **QUICK)
    [delivery] = listener.wait_for(1)
    assert_signed(SECRET, delivery)
    tampered = dict(delivery, body=delivery["body"].replace(b'"succeeded"', b'"failed"', 1))
    assert tampered["body"] != delivery["body"]
    assert expected_signature(SECRET, tampered) != delivery["headers"]["X-Easel-Signature"]
    assert expected_signature("other", delivery) != delivery["headers"]["X-Easel-Signature"]


def test_an_endpoint_that_always_fails_ends_failed_after_the_attempts(hook_server, listener_factory):
    failing = listener_factory(500)
    closed_port = HookListener()
    unreachable = closed_port.url
    closed_port.close()

    job = submit(hook_server, webhook=failing.url, **QUICK)
    refused = submit(hook_server, webhook=unreachable, **QUICK)

    done = wait_for_webhook_status(hook_server, job["id"], "failed")
    assert done["webhook"]["status"] == "failed after 2 attempts: HTTP 500"
    assert [d["status"] for d in failing.received()] == [500, 500]
    done = wait_for_webhook_status(hook_server, refused["id"], "failed")
    assert done["webhook"]["status"] == "failed after 2 attempts: connection refused"
    # The failures changed nothing else: the jobs succeeded and the server still works.
    assert done["state"] == "succeeded" and hook_server.health().status_code == 200


def test_a_slow_endpoint_does_not_hold_up_others(hook_server, listener_factory):
    slow, fast = listener_factory("hold"), listener_factory(200)
    held = submit(hook_server, webhook=slow.url, **QUICK)
    try:
        slow.wait_for(1)  # its first attempt is open until released
        other = submit(hook_server, webhook=fast.url, **dict(QUICK, steps=1))
        fast.wait_for(1)
    finally:
        slow.release.set()
    # Had the other delivery waited for the held one, the held attempt would have timed out
    # (15 s) before the release, and succeeded only at attempt 2.
    assert wait_for_webhook_status(hook_server, held["id"], "delivered")["webhook"]["status"] == \
        "delivered (attempt 1, HTTP 200)"
    assert wait_for_webhook_status(hook_server, other["id"], "delivered")["webhook"]["status"] == \
        "delivered (attempt 1, HTTP 200)"


def test_a_cancelled_job_is_announced_as_cancelled(hook_server, listener_factory):
    listener = listener_factory(200)
    blocker = submit(hook_server, **BLOCKER)
    wait_until(lambda: get_job(hook_server, blocker["id"])["state"] == "running", 120, "the blocker never started")
    waiting = submit(hook_server, webhook=listener.url, **QUICK)
    try:
        assert requests.post(f"{hook_server.url}/v1/jobs/{waiting['id']}/cancel", timeout=30).status_code == 200
    finally:
        requests.post(f"{hook_server.url}/v1/jobs/{blocker['id']}/cancel", timeout=30)
    [delivery] = listener.wait_for(1)
    assert delivery["headers"]["X-Easel-Event"] == "job.cancelled"
    assert_signed(SECRET, delivery)
    body = json.loads(delivery["body"])
    assert body["id"] == waiting["id"] and body["state"] == "cancelled" and body["error"]["code"] == "cancelled"
    wait_for_webhook_status(hook_server, waiting["id"], "delivered (attempt 1, HTTP 200)")


def test_the_generated_secret_is_private_and_signs_deliveries(server, listener_factory):
    path = server.workdir / "data" / "webhook-secret"
    secret = path.read_text().strip()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    listener = listener_factory(200)
    submit(server, webhook=listener.url, **QUICK)
    [delivery] = listener.wait_for(1)
    assert_signed(secret, delivery)


def test_the_generated_secret_survives_a_restart(tiny_models, tmp_path):
    first = EaselServer(tmp_path, tiny_models, "--no-preload").start()
    try:
        first.first_health()
        secret = (tmp_path / "data" / "webhook-secret").read_text()
    finally:
        first.stop()
    again = EaselServer(tmp_path, tiny_models, "--no-preload").start()
    try:
        again.first_health()
        assert (tmp_path / "data" / "webhook-secret").read_text() == secret
    finally:
        again.stop()


@pytest.mark.parametrize("webhook", ["ftp://x", "not a url", "http://", 5])
def test_a_webhook_that_is_not_an_http_url_is_rejected(server, webhook):
    response = requests.post(server.url + "/v1/jobs", json=dict(QUICK, webhook=webhook), timeout=30)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "webhook" and error["code"] == "invalid_field"
