"""Job events over a WebSocket end to end: a real server, real WebSocket and SSE clients."""

import concurrent.futures
import json
import time

import pytest
import requests
from websockets.sync.client import connect

from easel_server import get_job, submit, wait_until

QUICK = {"prompt": "x", "width": 64, "height": 64, "steps": 2}
# Holds the model while a test queues another job behind it; small steps, so a cancel lands fast.
BLOCKER = {"prompt": "a blocker", "width": 64, "height": 64, "steps": 150}


def ws_url(server, query=""):
    return server.url.replace("http://", "ws://") + "/v1/ws" + query






@pytest.fixture(scope="module")
def done_job(server):
    """A job that has succeeded."""
    job = submit(server, **QUICK)
    return wait_until(lambda: (j := get_job(server, job["id"]))["state"] == "succeeded" and j, 120,
                      f"job {job['id']} never succeeded")


def receive(ws, timeout=30):
    return json.loads(ws.recv(timeout=timeout))


def receive_until(ws, predicate, timeout=120):
    """Messages up to and including the first that satisfies `predicate`."""
    deadline = time.monotonic() + timeout
    messages = []
    while True:
        messages.append(receive(ws, timeout=max(0.1, deadline - time.monotonic())))
        if predicate(messages[-1]):
            return messages


def read_sse(response):
    """The data of each event of a text/event-stream response, until it ends."""
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            yield json.loads(line[len("data: "):])


def test_websocket_and_sse_see_the_same_events(server):
    # Following every job from the moment the handshake completes.
    with connect(ws_url(server)) as ws, concurrent.futures.ThreadPoolExecutor(1) as pool:
        blocker = submit(server, **BLOCKER)
        try:
            # The job waits behind the blocker until the SSE client is connected.
            wait_until(lambda: get_job(server, blocker["id"])["state"] == "running", 30, "the blocker never started")
            job = submit(server, seed=9, **dict(QUICK, steps=3))
            # The server subscribes before it sends the headers, so once `get` returns the SSE
            # client misses nothing.
            sse = requests.get(f"{server.url}/v1/jobs/{job['id']}/events", stream=True, timeout=120)
        finally:
            requests.post(f"{server.url}/v1/jobs/{blocker['id']}/cancel", timeout=30)
        with sse:
            sse_events = pool.submit(lambda: list(read_sse(sse)))
            ws_events = [e for e in receive_until(ws, lambda e: e.get("job_id") == job["id"] and e["type"] == "succeeded")
                         if e.get("job_id") == job["id"]]
            sse_events = sse_events.result(timeout=120)

    types = [e["type"] for e in ws_events]
    assert types[:2] == ["queued", "started"] and types[-1] == "succeeded", types
    assert set(types[2:-1]) == {"progress"}
    assert [e["step"] for e in ws_events if e["type"] == "progress"] == [1, 2, 3]
    assert all("job" not in e for e in ws_events if e["type"] == "progress")
    final = ws_events[-1]["job"]
    assert final["state"] == "succeeded" and final["images"][0]["url"] == f"/v1/images/{job['id']}-0"

    # The SSE client starts with the job's state when it connected (queued), then sees the
    # very same events.
    assert sse_events[0]["type"] == "queued" and sse_events[0]["job_id"] == job["id"]
    assert sse_events[1:] == ws_events[1:]


def test_subscribing_to_a_finished_job_gives_its_final_state_at_once(server, done_job):
    with connect(ws_url(server, f"?job={done_job['id']}")) as ws:
        event = receive(ws, timeout=10)
        assert event["type"] == "succeeded" and event["job_id"] == done_job["id"]
        assert event["job"]["images"] == done_job["images"]

    with connect(ws_url(server)) as ws:
        ws.send(json.dumps({"subscribe": [done_job["id"], "job_nope"]}))
        events = receive_until(ws, lambda e: "error" in e, timeout=10)
        assert events[-2]["type"] == "succeeded" and events[-2]["job"]["id"] == done_job["id"]
        assert events[-1] == {"error": {"code": "job_not_found",
                                        "message": "no job 'job_nope'; GET /v1/jobs lists them"}}


def test_subscriptions_narrow_and_widen_what_a_client_sees(server, done_job):
    final = ("succeeded", "failed", "cancelled")
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps({"subscribe": [done_job["id"]]}))
        receive_until(ws, lambda e: e.get("job_id") == done_job["id"], timeout=10)
        other = submit(server, **QUICK)
        watched = submit(server, **QUICK)
        ws.send(json.dumps({"subscribe": [watched["id"]]}))
        events = receive_until(ws, lambda e: e.get("type") in final)
        assert {e["job_id"] for e in events} == {watched["id"]}
        wait_until(lambda: get_job(server, other["id"])["state"] == "succeeded", 120, "the other job never finished")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1)

        ws.send(json.dumps({"unsubscribe": [watched["id"]], "subscribe": ["*"]}))
        # Messages are answered in order: once this error is back, "*" is in place.
        ws.send("{}")
        assert receive(ws, timeout=10)["error"]["code"] == "invalid_json"
        third = submit(server, **QUICK)
        events = receive_until(ws, lambda e: e.get("job_id") == third["id"] and e["type"] == "succeeded")
        assert [e["type"] for e in events if e.get("job_id") == third["id"]][:2] == ["queued", "started"]


@pytest.mark.parametrize("message, code, field", [
    ("not json", "invalid_json", None),
    ("[1, 2]", "invalid_json", None),
    ("{}", "invalid_json", None),
    ('{"subscribe": 5}', "invalid_field", "subscribe"),
    ('{"subscribe": ["job_x"], "bogus": 1}', "unknown_field", "bogus"),
    (b"\x00\x01", "invalid_json", None),
])
def test_a_bad_message_gets_an_error_and_the_socket_stays_usable(server, done_job, message, code, field):
    with connect(ws_url(server, f"?job={done_job['id']}")) as ws:
        assert receive(ws, timeout=10)["job_id"] == done_job["id"]
        ws.send(message)
        error = receive(ws, timeout=10)["error"]
        assert error["code"] == code and error.get("field") == field and error["message"]
        ws.send(json.dumps({"subscribe": [done_job["id"]]}))
        event = receive(ws, timeout=10)
        assert event["type"] == "succeeded" and event["job_id"] == done_job["id"]


def test_a_plain_get_is_told_to_upgrade(server):
    response = requests.get(server.url + "/v1/ws", timeout=10)
    assert response.status_code == 426 and response.headers["upgrade"] == "websocket"
    assert response.json()["error"]["code"] == "upgrade_required"
