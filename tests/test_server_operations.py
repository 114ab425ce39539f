"""Operations and security: API keys, CORS, limits, status, metrics, request ids, runner
crash retries and the shutdown drain."""

import datetime
import json
import os
import signal
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from easel_server import EaselServer, wait_until

KEY, FILE_KEY = "k1-secret-for-tests", "k2-from-the-file"
ORIGIN = "https://app.example.com"
QUICK = {"prompt": "quick", "width": 64, "height": 64, "steps": 2}
# About 1 s a step on an idle 2-core machine: long enough to queue behind, quick to cancel.
BLOCKER = {"prompt": "a blocker", "width": 128, "height": 128, "steps": 60, "seed": 1}


def session(key=KEY):
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {key}"
    return s


@pytest.fixture(scope="module")
def secured(tiny_models, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("secured")
    key_file = workdir / "keys.txt"
    key_file.write_text(f"# operators' keys\n\n{FILE_KEY}\n")
    easel = EaselServer(workdir, tiny_models, "--default-model", "tiny",
                        "--api-key", KEY, "--api-key-file", str(key_file), "--cors-origin", ORIGIN,
                        "--max-steps", "60", "--max-batch", "2", "--max-pixels", str(256 * 256),
                        "--max-prompt-length", "100", "--max-body-bytes", "8192",
                        "--max-queue-per-key", "2", "--runner-crash-retries", "1").start()
    try:
        yield easel.wait_ready()
    finally:
        easel.stop()


def error_of(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]


def submit(server, key=KEY, **fields):
    response = session(key).post(server.url + "/v1/jobs", json=fields, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def job(server, job_id):
    return session().get(f"{server.url}/v1/jobs/{job_id}", timeout=30).json()


def wait_state(server, job_id, *states, timeout=120):
    return wait_until(lambda: (j := job(server, job_id))["state"] in states and j, timeout,
                      f"job {job_id} never reached {states}", interval=0.2)


def cancel_all(server, *jobs):
    for j in jobs:
        session().post(f"{server.url}/v1/jobs/{j['id']}/cancel", timeout=30)
    for j in jobs:
        wait_state(server, j["id"], "cancelled", "succeeded", "failed")


# --- API keys -------------------------------------------------------------------------

def test_health_is_open_and_everything_else_needs_a_key(secured):
    assert requests.get(secured.url + "/health", timeout=10).status_code == 200
    for path in ("/v1/models", "/v1/status", "/ready", "/metrics", "/v1/jobs", "/v1/nothing"):
        response = requests.get(secured.url + path, timeout=10)
        error = error_of(response, 401)
        assert error["code"] == "unauthorized" and "Bearer" in error["message"]
        assert "Bearer" in response.headers["WWW-Authenticate"] and "Basic" in response.headers["WWW-Authenticate"]
    wrong = requests.get(secured.url + "/v1/models", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert error_of(wrong, 401)["message"] == "the API key is not valid"


def test_bearer_and_basic_keys_are_accepted(secured):
    assert requests.get(secured.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).status_code == 200
    # AUTOMATIC1111 clients send HTTP Basic; the key is the password (the user is ignored).
    assert requests.get(secured.url + "/v1/models", auth=("anyone", FILE_KEY), timeout=10).status_code == 200
    assert requests.get(secured.url + "/v1/models", auth=("anyone", KEY + "x"), timeout=10).status_code == 401
    response = session().post(secured.url + "/v1/txt2img", json=QUICK, timeout=120)
    assert response.status_code == 200, response.text


def test_websocket_needs_a_key_too(secured):
    url = secured.url.replace("http://", "ws://") + "/v1/ws"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=10).close()
    # The upgrade is refused before the handshake (hummingbird-websocket answers 400 to any refusal).
    assert refused.value.response.status_code in (400, 401)
    with connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}, open_timeout=10) as ws:
        ws.send('{"subscribe": ["job_nope"]}')
        assert json.loads(ws.recv(timeout=10))["error"]["code"] == "job_not_found"


# --- CORS -----------------------------------------------------------------------------

def preflight(server, origin):
    return requests.options(server.url + "/v1/txt2img", timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})


def test_cors_preflight_allowed_for_a_listed_origin_only(secured):
    allowed = preflight(secured, ORIGIN)
    assert allowed.status_code == 204, allowed.text
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers

    refused = preflight(secured, "https://evil.example.net")
    assert error_of(refused, 403)["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in refused.headers

    listed = session().get(secured.url + "/v1/models", headers={"Origin": ORIGIN}, timeout=10)
    assert listed.headers["Access-Control-Allow-Origin"] == ORIGIN
    other = session().get(secured.url + "/v1/models", headers={"Origin": "https://evil.example.net"}, timeout=10)
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
    # Even a 401 carries the header, so a page can read why it failed.
    unauthorized = requests.get(secured.url + "/v1/models", headers={"Origin": ORIGIN}, timeout=10)
    assert unauthorized.status_code == 401 and unauthorized.headers["Access-Control-Allow-Origin"] == ORIGIN


# --- Limits ---------------------------------------------------------------------------

@pytest.mark.parametrize("fields, field", [
    ({"steps": 61}, "steps"),
    ({"batch_size": 3}, "batch_size"),
    ({"width": 512, "height": 256}, "width"),
    ({"prompt": "p" * 101}, "prompt"),
])
def test_generation_limits_are_422(secured, fields, field):
    error = error_of(session().post(secured.url + "/v1/txt2img", json={**QUICK, **fields}, timeout=30), 422)
    assert error["code"] == "invalid_field"
    assert error["field"] == field or field in error["message"]


def test_body_limit_is_413(secured):
    response = session().post(secured.url + "/v1/jobs", data=b'{"prompt": "' + b"a" * 9000 + b'"}', timeout=30)
    assert error_of(response, 413)["code"] == "body_too_large"


def test_queue_share_per_key_and_status_counts_the_queue(secured):
    blocker = submit(secured, **BLOCKER)
    wait_state(secured, blocker["id"], "running")
    mine = submit(secured, priority=5, **QUICK)
    # Two jobs (one running, one queued) is this key's share...
    refused = session().post(secured.url + "/v1/jobs", json=QUICK, timeout=30)
    error = error_of(refused, 429)
    assert error["code"] == "queue_full" and "--max-queue-per-key" in error["message"]
    assert refused.headers["Retry-After"]
    # ...and the other key is not starved.
    theirs = [submit(secured, key=FILE_KEY, **QUICK) for _ in range(2)]
    try:
        status = session().get(secured.url + "/v1/status", timeout=30).json()
        assert status["queue"]["depth"] == 3
        assert status["queue"]["by_priority"] == [{"priority": 5, "count": 1}, {"priority": 0, "count": 2}]
        running = status["running"]
        assert [r["id"] for r in running] == [blocker["id"]]
        assert running[0]["total_steps"] == 60 and 0 <= running[0]["step"] <= 60
        runner = next(r for r in status["runners"] if r["model"] == "tiny")
        assert runner["state"] == "generating" and runner["pid"] > 0
        assert runner["rss_bytes"] > 10 * 2**20
    finally:
        cancel_all(secured, blocker, mine, *theirs)


# --- Status, metrics, request ids -----------------------------------------------------

def test_status_fields_are_present_and_plausible(secured):
    status = session().get(secured.url + "/v1/status", timeout=30).json()
    assert status["version"] and status["uptime_seconds"] > 0 and status["readiness"] == "ready"
    host = status["host"]
    assert host["cpu_count"] >= 1 and 0 <= host["cpu_percent"] <= 100
    assert 0 < host["memory_used_bytes"] < host["memory_total_bytes"]
    assert status["process"]["pid"] == secured.process.pid and status["process"]["rss_bytes"] > 2**20
    runner = next(r for r in status["runners"] if r["model"] == "tiny")
    assert runner["state"] in ("idle", "generating") and runner["rss_bytes"] > 10 * 2**20
    assert runner["load_count"] >= 1 and runner["device"] == "cpu" and runner.get("gpu_memory_bytes") is None
    assert status["queue"]["capacity"] == 100
    counters = status["counters"]
    assert {"images_generated", "jobs_failed", "runner_restarts", "model_loads"} <= counters.keys()


def metric_values(server):
    response = session().get(server.url + "/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def total(values, name, **labels):
    return sum(v for (n, l), v in values.items() if n == name and set(labels.items()) <= set(l))


def test_metrics_parse_and_counters_move(secured):
    before = metric_values(secured)
    response = session().post(secured.url + "/v1/txt2img", json={**QUICK, "batch_size": 2}, timeout=120)
    assert response.status_code == 200, response.text
    after = metric_values(secured)
    assert total(after, "easel_images_generated_total", model="tiny") == total(before, "easel_images_generated_total", model="tiny") + 2
    assert total(after, "easel_jobs_finished_total", state="succeeded") > total(before, "easel_jobs_finished_total", state="succeeded")
    assert total(after, "easel_http_requests_total", route="/v1/txt2img", status="200") >= 1
    assert total(after, "easel_http_request_duration_seconds_count", route="/v1/txt2img") >= 1
    assert total(after, "easel_job_duration_seconds_count") >= 1
    assert total(after, "easel_model_loads_total", model="tiny") >= 1
    assert total(after, "easel_model_load_seconds_total", model="tiny") > 0
    assert total(after, "easel_runner_resident_bytes", model="tiny") > 10 * 2**20
    assert total(after, "process_resident_memory_bytes") > 2**20
    assert total(after, "easel_queue_depth") == 0 and total(after, "easel_ready") == 1
    assert ("easel_jobs_running", ()) in after


def test_request_id_is_echoed_or_made(secured):
    given = session().get(secured.url + "/v1/models", headers={"X-Request-ID": "trace-42"}, timeout=10)
    assert given.headers["X-Request-ID"] == "trace-42"
    made = requests.get(secured.url + "/v1/models", timeout=10)
    assert made.status_code == 401 and made.headers["X-Request-ID"].startswith("req_")
    wait_until(lambda: "request_id=trace-42" in secured.log_path.read_text(errors="replace"), 10,
               "the request id is not in the log")


# --- Runner crash: retried once, counted ----------------------------------------------

def test_killed_runner_is_restarted_and_its_job_retried(secured):
    before = session().get(secured.url + "/v1/status", timeout=30).json()
    j = submit(secured, prompt="survivor", width=128, height=128, steps=12, seed=3)

    def busy():
        runner = next(r for r in session().get(secured.url + "/v1/status", timeout=30).json()["runners"]
                      if r["model"] == "tiny")
        return runner["state"] == "generating" and (runner["step"] or 0) >= 1 and runner["pid"]
    pid = wait_until(busy, 60, "the runner never started generating", interval=0.2)
    os.kill(pid, signal.SIGKILL)
    done = wait_state(secured, j["id"], "succeeded", "failed", timeout=300)
    assert done["state"] == "succeeded", done
    after = session().get(secured.url + "/v1/status", timeout=30).json()
    assert after["counters"]["runner_restarts"] == before["counters"]["runner_restarts"] + 1
    assert after["counters"]["jobs_retried"] == before["counters"]["jobs_retried"] + 1
    assert total(metric_values(secured), "easel_runner_restarts_total", model="tiny") >= 1
    assert "running it again (retry 1 of 1)" in secured.log_path.read_text(errors="replace")


# --- An open server: rate limit, readiness, path traversal ----------------------------

@pytest.fixture(scope="module")
def open_server(tiny_models, tmp_path_factory):
    easel = EaselServer(tmp_path_factory.mktemp("open"), tiny_models, "--default-model", "tiny", "--no-preload",
                        "--request-timeout", "5").start()
    try:
        yield easel.wait_ready()
    finally:
        easel.stop()


def test_ready_says_whether_a_model_is_loaded(open_server):
    ready = requests.get(open_server.url + "/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["ready"] is True
    not_loaded = requests.get(open_server.url + "/ready", params={"model": "tiny"}, timeout=10)
    assert not_loaded.status_code == 503 and not_loaded.json()["status"] == "not_loaded"


@pytest.mark.parametrize("image_id", [
    "..%2F..%2F..%2Fetc%2Fpasswd", "..%2Fstore%2Fjobs.sqlite", "job_%2E%2E", "%2Fetc%2Fpasswd",
    "job_00000000000000000000000000000000-0%2F..%2F..%2Fjobs.sqlite",
])
def test_path_traversal_in_image_ids_is_refused(open_server, image_id):
    response = requests.get(f"{open_server.url}/v1/images/{image_id}", timeout=10)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] in ("image_not_found", "not_found")


def test_request_timeout_is_504_and_cancels_its_job(open_server):
    blocker = requests.post(open_server.url + "/v1/jobs", json=BLOCKER, timeout=30).json()
    try:
        started = time.monotonic()
        # Queued behind the blocker (and its model load), the request cannot finish in 5 s.
        response = requests.post(open_server.url + "/v1/txt2img", json={**QUICK, "prompt": "too late"}, timeout=60)
        assert 4.5 < time.monotonic() - started < 30
        error = error_of(response, 504)
        assert error["code"] == "request_timeout" and "--request-timeout" in error["message"]
        jobs = requests.get(open_server.url + "/v1/jobs", timeout=30).json()["data"]
        late = next(j for j in jobs if j["parameters"]["prompt"] == "too late")
        wait_until(lambda: requests.get(f"{open_server.url}/v1/jobs/{late['id']}", timeout=10).json()["state"] == "cancelled",
                   30, "the timed-out request's job was not cancelled", interval=1)
    finally:
        requests.post(f"{open_server.url}/v1/jobs/{blocker['id']}/cancel", timeout=30)


def test_rate_limit_is_429_with_retry_after(tiny_models, tmp_path):
    limited_server = EaselServer(tmp_path, tiny_models, "--default-model", "tiny", "--no-preload",
                                 "--rate-limit", "30", "--rate-limit-burst", "5").start().wait_ready()
    try:
        rate_limited(limited_server)
    finally:
        limited_server.stop()


def rate_limited(open_server):
    answers = [requests.get(open_server.url + "/v1/jobs", timeout=10) for _ in range(8)]
    statuses = [a.status_code for a in answers]
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:], statuses
    limited = next(a for a in answers if a.status_code == 429)
    error = error_of(limited, 429)
    assert error["code"] == "rate_limited" and "--rate-limit" in error["message"]
    assert int(limited.headers["Retry-After"]) >= 1
    assert requests.get(open_server.url + "/health", timeout=10).status_code == 200


# --- Shutdown drain -------------------------------------------------------------------

def test_sigterm_drains_refuses_new_work_and_keeps_the_queue(tiny_models, tmp_path):
    args = ("--default-model", "tiny", "--shutdown-grace", "300")
    first = EaselServer(tmp_path, tiny_models, *args).start().wait_ready()
    try:
        running = requests.post(first.url + "/v1/jobs", json={**QUICK, "steps": 8, "width": 128, "height": 128},
                                timeout=30).json()
        wait_until(lambda: requests.get(f"{first.url}/v1/jobs/{running['id']}", timeout=10).json()["state"] == "running",
                   60, "never ran")
        queued = [requests.post(first.url + "/v1/jobs", json={**QUICK, "seed": s}, timeout=30).json() for s in (6, 7)]
        first.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "shutting down: no new jobs" in first.log_path.read_text(errors="replace"), 10,
                   "the drain did not start")
        refused = requests.post(first.url + "/v1/jobs", json=QUICK, timeout=10)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
        assert requests.get(first.url + "/ready", timeout=10).json()["status"] == "shutting_down"
        # The running job finishes while the server drains; then the server exits.
        assert first.process.wait(timeout=360) == 0
        stopped_at = datetime.datetime.now(datetime.timezone.utc)
    finally:
        first.stop()

    second = EaselServer(tmp_path, tiny_models, *args, port=first.port).start().wait_ready()
    try:
        drained = requests.get(f"{second.url}/v1/jobs/{running['id']}", timeout=10).json()
        assert drained["state"] == "succeeded", drained
        assert datetime.datetime.fromisoformat(drained["finished_at"]) <= stopped_at, "it ran again after the restart"
        for j in queued:
            finished = wait_until(
                lambda: (d := requests.get(f"{second.url}/v1/jobs/{j['id']}", timeout=10).json())["state"] == "succeeded" and d,
                120, "a queued job did not run after the restart")
            assert finished["images"][0]["seed"] == j["parameters"]["seed"]
    finally:
        second.stop()
