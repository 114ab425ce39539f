"""Merged jobs end to end: queued jobs that differ only in prompt and seed run as one
engine call (`--max-batch-size`), and each keeps its own seeds, images and events."""

import base64
import io
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image

from easel_server import EaselServer, get_job, submit, wait_for_state, wait_until
from test_server_jobs import BLOCKER, cancel, read_sse, wait_running

MERGEABLE = {"width": 64, "height": 64, "steps": 3, "sampler": "Euler a"}
MEMBERS = [{"prompt": "a lighthouse", "seed": 101}, {"prompt": "a red fox", "negative_prompt": "blurry", "seed": 202},
           {"prompt": "a lighthouse", "seed": 303, "batch_size": 2}]


@pytest.fixture(scope="module")
def merging_server(tiny_models, tmp_path_factory):
    easel = EaselServer(tmp_path_factory.mktemp("merging"), tiny_models, "--default-model", "tiny",
                        "--max-batch-size", "4", "--preview-every", "1").start()
    try:
        yield easel.wait_ready()
    finally:
        easel.stop()


def queue_behind_a_blocker(server, requests_fields):
    """Submits the jobs while a long job keeps the model busy; returns them and the blocker."""
    blocker = submit(server, **BLOCKER)
    wait_running(server, blocker["id"])
    jobs = [submit(server, **fields) for fields in requests_fields]
    assert all(job["state"] == "queued" for job in jobs)
    return jobs, blocker


def pixels(server, image):
    data = requests.get(server.url + image["url"], timeout=30).content
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def merged_total(server):
    metrics = requests.get(server.url + "/metrics", timeout=30).text
    return float(re.search(r"^easel_merged_jobs_total (\S+)$", metrics, re.M).group(1))


def test_queued_jobs_merge_and_each_gets_what_it_would_get_alone(merging_server):
    before = merged_total(merging_server)
    jobs, blocker = queue_behind_a_blocker(merging_server, [dict(MERGEABLE, **member) for member in MEMBERS])
    streams = [requests.get(f"{merging_server.url}/v1/jobs/{job['id']}/events", stream=True, timeout=120)
               for job in jobs]
    cancel(merging_server, blocker["id"])
    with ThreadPoolExecutor(len(streams)) as pool:
        events = list(pool.map(lambda response: list(read_sse(response)), streams))
    for response in streams:
        response.close()

    for job, member, job_events in zip(jobs, MEMBERS, events):
        names = [name for name, _ in job_events]
        assert names[0] == "queued" and names[-1] == "succeeded" and names.count("started") == 1, names
        progress = [data for name, data in job_events if name == "progress"]
        assert [data["job_id"] for data in progress] == [job["id"]] * len(progress)
        assert [data["step"] for data in progress] == [1, 2, 3]
        assert [bool(data.get("preview")) for data in progress] == [True, True, False]
        done = job_events[-1][1]["job"]
        seeds = [member["seed"] + i for i in range(member.get("batch_size", 1))]
        assert [image["seed"] for image in done["images"]] == done["parameters"]["seeds"] == seeds
        assert done["timings"]["merged_jobs"] == 3, done["timings"]
    assert merged_total(merging_server) == before + 3
    assert "into one engine call" in merging_server.log_path.read_text()

    # The model is idle now: each request runs alone and must draw the same pixels.
    for job, member in zip(jobs, MEMBERS):
        merged = get_job(merging_server, job["id"])
        alone = wait_for_state(merging_server, submit(merging_server, **MERGEABLE, **member)["id"], "succeeded")
        assert alone["timings"]["merged_jobs"] == 1
        for merged_image, alone_image in zip(merged["images"], alone["images"], strict=True):
            difference = np.abs(pixels(merging_server, merged_image) - pixels(merging_server, alone_image)).max()
            assert difference <= 2, (merged_image["seed"], difference)


def test_jobs_that_differ_in_more_than_prompt_and_seed_run_apart(merging_server):
    jobs, blocker = queue_behind_a_blocker(merging_server, [
        dict(MERGEABLE, prompt="a", seed=1), dict(MERGEABLE, prompt="b", seed=2, steps=4),
        dict(MERGEABLE, prompt="c", seed=3)])
    cancel(merging_server, blocker["id"])
    done = [wait_for_state(merging_server, job["id"], "succeeded") for job in jobs]
    # The second job cannot join the first, and the third may not overtake the second.
    assert [job["timings"]["merged_jobs"] for job in done] == [1, 1, 1]


def test_cancelling_one_merged_job_leaves_the_others_their_results(merging_server):
    slow = dict(MERGEABLE, steps=30)
    (kept, dropped), blocker = queue_behind_a_blocker(merging_server, [dict(slow, prompt="kept", seed=5),
                                                                       dict(slow, prompt="dropped", seed=6)])
    cancel(merging_server, blocker["id"])
    wait_running(merging_server, dropped["id"])
    assert cancel(merging_server, dropped["id"])["state"] == "cancelled"
    finished = wait_for_state(merging_server, kept["id"], "succeeded", "failed", "cancelled", timeout=300)
    assert finished["state"] == "succeeded" and finished["timings"]["merged_jobs"] == 2
    assert [image["seed"] for image in finished["images"]] == [5]
    gone = get_job(merging_server, dropped["id"])
    assert gone["state"] == "cancelled" and gone["images"] == []


def test_the_model_listing_shows_the_warm_up(merging_server):
    runtime = merging_server.model("tiny")["runtime"]
    assert 0 < runtime["warmup_seconds"] < runtime["last_load_seconds"]
