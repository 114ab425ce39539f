"""The job queue end to end: async jobs, events, cancel, priorities, limits, persistence."""

import io
import json
import socket
import time

import pytest
import requests
from PIL import Image

from easel_server import EaselServer, get_job, submit, wait_for_state, wait_until

QUICK = {"prompt": "a quick one", "width": 64, "height": 64, "steps": 2}
# Long enough to still be running while a test looks at the queue; tests cancel it.
BLOCKER = {"prompt": "a blocker", "width": 256, "height": 256, "steps": 150}


@pytest.fixture(scope="module")
def jobs_server(tiny_models, tmp_path_factory):
    easel = EaselServer(tmp_path_factory.mktemp("jobs"), tiny_models, "--default-model", "tiny",
                        "--max-queue", "4", "--preview-every", "2").start()
    try:
        yield easel.wait_ready()
    finally:
        easel.stop()








def wait_running(server, job_id):
    return wait_until(lambda: (job := get_job(server, job_id))["state"] == "running" and job["step"] >= 1 and job,
                      120, f"job {job_id} never started stepping")


def cancel(server, job_id):
    response = requests.post(f"{server.url}/v1/jobs/{job_id}/cancel", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_submit_poll_and_fetch_the_image(jobs_server):
    job = submit(jobs_server, seed=11, **QUICK)
    assert job["id"].startswith("job_") and job["state"] in ("queued", "running")
    assert job["parameters"]["seeds"] == [11] and job["total_steps"] == 2
    done = wait_for_state(jobs_server, job["id"], "succeeded")
    assert done["progress"] == 1 and done["step"] == 2 and done.get("error") is None
    [image] = done["images"]
    assert image["url"] == f"/v1/images/{image['id']}" and image["seed"] == 11

    png = requests.get(jobs_server.url + image["url"], timeout=30)
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (64, 64)
    jpeg = requests.get(jobs_server.url + image["url"] + "?format=jpeg", timeout=60)
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).format == "JPEG"
    bad = requests.get(jobs_server.url + image["url"] + "?format=gif", timeout=30)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "format"


def read_sse(response):
    """(event name, data) pairs from a text/event-stream response, until it ends."""
    event = None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: "):
            yield event, json.loads(line[len("data: "):])


def test_server_sent_events_arrive_in_order_with_previews(jobs_server):
    job = submit(jobs_server, seed=3, **dict(QUICK, steps=6))
    with requests.get(f"{jobs_server.url}/v1/jobs/{job['id']}/events", stream=True, timeout=120) as response:
        assert response.headers["content-type"] == "text/event-stream"
        events = list(read_sse(response))
    names = [name for name, _ in events]
    assert names[0] in ("queued", "started") and names[-1] == "succeeded"
    steps = [data["step"] for name, data in events if name == "progress"]
    assert steps == sorted(steps) and steps[-1] == 6
    previews = {data["step"]: data["preview"] for name, data in events if name == "progress" and data.get("preview")}
    assert set(previews) <= {2, 4} and previews, "previews come every 2 steps, never on the last"
    preview = next(iter(previews.values()))
    assert Image.open(io.BytesIO(__import__("base64").b64decode(preview["base64"]))).format == "JPEG"
    final = events[-1][1]["job"]
    assert final["state"] == "succeeded" and final["images"][0]["url"].startswith("/v1/images/")

    # A late subscriber gets the final state at once, and the stream ends.
    with requests.get(f"{jobs_server.url}/v1/jobs/{job['id']}/events", stream=True, timeout=30) as late:
        assert [name for name, _ in read_sse(late)] == ["succeeded"]


def test_cancel_queued_and_running_jobs_and_the_runner_is_freed(jobs_server):
    blocker = submit(jobs_server, **BLOCKER)
    wait_running(jobs_server, blocker["id"])
    waiting = submit(jobs_server, **QUICK)
    assert waiting["state"] == "queued" and waiting["queue_position"] == 1

    cancelled = cancel(jobs_server, waiting["id"])
    assert cancelled["state"] == "cancelled" and cancelled["error"]["code"] == "cancelled"

    follower = submit(jobs_server, **QUICK)
    started_cancel = time.monotonic()
    cancel(jobs_server, blocker["id"])
    stopped = wait_for_state(jobs_server, blocker["id"], "cancelled", timeout=60)
    assert stopped["error"]["code"] == "cancelled" and stopped["step"] < 150
    assert "cancelled at step" in stopped["error"]["message"]
    # The next job starts as soon as the runner is free.
    wait_for_state(jobs_server, follower["id"], "running", "succeeded", timeout=30)
    assert time.monotonic() - started_cancel < 30
    assert requests.delete(f"{jobs_server.url}/v1/jobs/{follower['id']}", timeout=30).status_code == 200


def test_priority_first_then_first_come_first_served(jobs_server):
    blocker = submit(jobs_server, **BLOCKER)
    wait_running(jobs_server, blocker["id"])
    low_a = submit(jobs_server, priority=0, **QUICK)
    low_b = submit(jobs_server, priority=0, **QUICK)
    high = submit(jobs_server, priority=10, **QUICK)
    assert high["queue_position"] == 1
    assert get_job(jobs_server, low_a["id"])["queue_position"] == 2
    assert get_job(jobs_server, low_b["id"])["queue_position"] == 3
    cancel(jobs_server, blocker["id"])
    finished = [wait_for_state(jobs_server, job["id"], "succeeded") for job in (high, low_a, low_b)]
    starts = [job["started_at"] for job in finished]
    assert starts == sorted(starts)


def test_full_queue_answers_429_with_retry_after(jobs_server):
    blocker = submit(jobs_server, **BLOCKER)
    wait_running(jobs_server, blocker["id"])
    queued = [submit(jobs_server, **QUICK) for _ in range(4)]
    response = requests.post(jobs_server.url + "/v1/jobs", json=QUICK, timeout=30)
    assert response.status_code == 429 and response.headers["retry-after"]
    assert response.json()["error"]["code"] == "queue_full"
    for job in queued + [blocker]:
        cancel(jobs_server, job["id"])
    wait_for_state(jobs_server, blocker["id"], "cancelled", timeout=60)


def test_variations_make_a_batch(jobs_server):
    response = requests.post(jobs_server.url + "/v1/jobs", timeout=30, json=dict(
        QUICK, variations={"prompt": ["a fox", "a hare"], "seed": [1, 2]}))
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["object"] == "batch" and batch["job_count"] == 4
    combos = {(job["parameters"]["prompt"], job["parameters"]["seed"]) for job in batch["jobs"]}
    assert combos == {("a fox", 1), ("a fox", 2), ("a hare", 1), ("a hare", 2)}
    for job in batch["jobs"]:
        wait_for_state(jobs_server, job["id"], "succeeded")
    summary = requests.get(f"{jobs_server.url}/v1/batches/{batch['id']}", timeout=30).json()
    assert summary["states"] == {"succeeded": 4} and len(summary["jobs"]) == 4


def test_listing_filters_and_pages(jobs_server):
    job = submit(jobs_server, **QUICK)
    wait_for_state(jobs_server, job["id"], "succeeded")
    listing = requests.get(jobs_server.url + "/v1/jobs", params={"state": "succeeded", "model": "tiny", "limit": 2},
                           timeout=30).json()
    assert listing["object"] == "list" and len(listing["data"]) == 2
    assert all(j["state"] == "succeeded" and j["model"] == "tiny" for j in listing["data"])
    assert listing["data"][0]["id"] == job["id"], "newest first"
    second_page = requests.get(jobs_server.url + "/v1/jobs", params={"state": "succeeded", "limit": 2, "offset": 2},
                               timeout=30).json()["data"]
    assert not {j["id"] for j in second_page} & {j["id"] for j in listing["data"]}
    future = requests.get(jobs_server.url + "/v1/jobs", params={"since": "2999-01-01T00:00:00Z"}, timeout=30).json()
    assert future["data"] == []


@pytest.mark.parametrize("path, status, field", [
    ("/v1/jobs?state=done", 422, "state"),
    ("/v1/jobs?limit=0", 422, "limit"),
    ("/v1/jobs?since=yesterday", 422, "since"),
    ("/v1/jobs/job_doesnotexist", 404, None),
    ("/v1/images/..%2F..%2Fetc%2Fpasswd", 404, None),
    ("/v1/images/job_00000000000000000000000000000000-0", 404, None),
])
def test_bad_job_requests(jobs_server, path, status, field):
    response = requests.get(jobs_server.url + path, timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["error"].get("field") == field


@pytest.mark.parametrize("body, field", [
    ({"prompt": "x", "priority": 1000}, "priority"),
    ({"prompt": "x", "webhook": "not a url"}, "webhook"),
    ({"prompt": "x", "variations": {"colour": ["red"]}}, "variations.colour"),
    ({"prompt": "x", "variations": {"seed": []}}, "variations.seed"),
    ({"prompt": "x", "steps": 0}, "steps"),
])
def test_invalid_job_bodies_name_the_field(jobs_server, body, field):
    response = requests.post(jobs_server.url + "/v1/jobs", json=body, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_sync_request_whose_client_disconnects_cancels_its_job(jobs_server):
    body = json.dumps(BLOCKER).encode()
    with socket.create_connection(("127.0.0.1", jobs_server.port)) as client:
        client.sendall(b"POST /v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

        def running_job():
            jobs = requests.get(jobs_server.url + "/v1/jobs", params={"state": "running"}, timeout=30).json()["data"]
            return next((j for j in jobs if j["parameters"]["prompt"] == "a blocker" and j["step"] >= 1), None)
        job = wait_until(running_job, 60, "the synchronous request's job never ran")
    wait_for_state(jobs_server, job["id"], "cancelled", timeout=60)


def test_queued_jobs_survive_a_restart_and_old_results_are_still_served(tiny_models, tmp_path):
    args = ("--default-model", "tiny", "--shutdown-grace", "0")
    first = EaselServer(tmp_path, tiny_models, *args).start().wait_ready()
    try:
        done = submit(first, seed=5, **QUICK)
        done = wait_for_state(first, done["id"], "succeeded")
        blocker = submit(first, **BLOCKER)
        wait_running(first, blocker["id"])
        queued = [submit(first, seed=seed, **QUICK) for seed in (6, 7)]
    finally:
        first.stop()
    assert first.process.returncode == 0, first.log_tail()

    second = EaselServer(tmp_path, tiny_models, *args, port=first.port).start().wait_ready()
    try:
        # The job that was running when the server stopped is queued again, first in line.
        assert get_job(second, blocker["id"])["state"] in ("queued", "running")
        cancel(second, blocker["id"])
        for job in queued:
            finished = wait_for_state(second, job["id"], "succeeded")
            assert finished["images"][0]["seed"] == job["parameters"]["seed"]
        image = requests.get(second.url + done["images"][0]["url"], timeout=30)
        assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size == (64, 64)
    finally:
        second.stop()


def test_retention_removes_results_older_than_the_limit(tiny_models, tmp_path):
    # 0.00003 days is 2.6 s: the first job ages past it, the second is fresh when retention runs.
    easel = EaselServer(tmp_path, tiny_models, "--default-model", "tiny", "--retention-days", "0.00003").start()
    try:
        easel.wait_ready()
        first = wait_for_state(easel, submit(easel, seed=1, **QUICK)["id"], "succeeded")
        finished = time.monotonic()
        wait_until(lambda: time.monotonic() - finished > 3, 10, "clock")
        second = wait_for_state(easel, submit(easel, seed=2, **QUICK)["id"], "succeeded")
        assert requests.get(f"{easel.url}/v1/jobs/{first['id']}", timeout=30).status_code == 404
        assert requests.get(easel.url + first["images"][0]["url"], timeout=30).status_code == 404
        assert requests.get(easel.url + second["images"][0]["url"], timeout=30).status_code == 200
    finally:
        easel.stop()
