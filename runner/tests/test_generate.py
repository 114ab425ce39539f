"""Generation through a real runner process serving the tiny model.

The runner gets a sitecustomize (tests/noisy) that prints to stdout on every image
encoding, so every test here also checks that stray output never breaks the framing.
"""

import pathlib
import re
import time

import numpy as np
import pytest

import runner_client as rc

NOISY = pathlib.Path(__file__).resolve().parent / "noisy"
CORE_SAMPLERS = {"Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE", "DDIM", "PNDM", "Heun",
                 "DPM2", "DPM2 a", "UniPC", "DEIS"}
LONG_STEPS = 200


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    runner, hello = rc.start(tmp_path_factory.mktemp("generate") / "runner.log", extra_path=[NOISY])
    yield runner, hello
    runner.close()


@pytest.fixture(scope="module")
def first_load(started, tiny):
    reply, _ = started[0].request(rc.load_message("load-1", tiny["folder"]))
    assert reply["type"] == "loaded", reply
    return reply


@pytest.fixture(scope="module")
def runner(started, first_load):
    return started[0]


def test_hello_describes_the_runner(started):
    runner, hello = started
    assert hello["protocol"] == 1
    assert hello["runner_version"] == "0.1.0"
    assert hello["pid"] == runner.proc.pid
    assert hello["engines"] == ["diffusers"]
    assert hello["device"] in ("cpu", "cuda")
    assert hello["device_name"]
    assert hello["torch_version"].startswith("2.13.0")
    assert CORE_SAMPLERS <= set(hello["samplers"])


def test_load_reports_the_model(started, first_load):
    device = started[1]["device"]
    assert first_load["id"] == "load-1"
    assert first_load["model_id"] == "tiny"
    assert (first_load["architecture"], first_load["device"]) == ("sd1", device)
    assert first_load["dtype"] == ("float16" if device == "cuda" else "float32")
    assert first_load["load_count"] == 1
    assert first_load["load_seconds"] > first_load["warmup_seconds"] > 0
    assert 50 * 2**20 < first_load["memory_bytes"] < 8 * 2**30


def test_reload_counts_and_infers_the_architecture(runner, tiny):
    reply, _ = runner.request(rc.load_message("load-2", tiny["folder"], architecture=None))
    assert (reply["type"], reply["architecture"], reply["load_count"]) == ("loaded", "sd1", 2)


def test_load_without_warm_up_reports_none(runner, tiny):
    reply, _ = runner.request({**rc.load_message("load-cold", tiny["folder"]), "warm_up": False})
    assert (reply["type"], reply["warmup_seconds"]) == ("loaded", None)


def test_png_batch_with_progress_and_infotext(runner):
    message = rc.generate_message("gen-png", seeds=[11, 12], steps=2)
    reply, before = runner.request(message)
    assert reply["type"] == "result", reply
    assert [(f["type"], f["id"], f["step"], f["total"]) for f in before] == [
        ("progress", "gen-png", 1, 2), ("progress", "gen-png", 2, 2)]
    assert reply["engine_seconds"] > 0
    assert [image["seed"] for image in reply["images"]] == [11, 12]
    for image, infotext in zip(reply["images"], message["infotexts"]):
        decoded = rc.decode(image)
        assert decoded.format == "PNG"
        assert decoded.size == (64, 64) == (image["width"], image["height"])
        assert image["format"] == "png"
        assert decoded.info["parameters"] == infotext
    assert "noise-from-a-library (fd 1)" in runner.log_text()


def test_non_square_size(runner):
    reply, _ = runner.request(rc.generate_message("gen-wide", seeds=[1], steps=1, size=64, width=96))
    assert rc.decode(reply["images"][0]).size == (96, 64)


def test_same_seed_same_pixels_other_seed_other_pixels(runner):
    first, _ = runner.request(rc.generate_message("gen-a", seeds=[5, 6]))
    again, _ = runner.request(rc.generate_message("gen-b", seeds=[5, 6]))
    other, _ = runner.request(rc.generate_message("gen-c", seeds=[7, 8]))
    a, b, c = rc.pixels(first), rc.pixels(again), rc.pixels(other)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("fmt,pil_format", [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_jpeg_and_webp_carry_the_infotext_as_exif_user_comment(runner, fmt, pil_format):
    message = rc.generate_message(f"gen-{fmt}", seeds=[3], output_format=fmt)
    reply, _ = runner.request(message)
    image = reply["images"][0]
    decoded = rc.decode(image)
    assert (image["format"], decoded.format, decoded.size) == (fmt, pil_format, (64, 64))
    comment = decoded.getexif().get_ifd(0x8769)[0x9286]
    assert comment == b"UNICODE\x00" + message["infotexts"][0].encode("utf-16-be")


def test_every_advertised_sampler_generates(started, runner):
    _, hello = started
    steps = 3
    failures = {}
    for sampler in hello["samplers"]:
        reply, before = runner.request(rc.generate_message(f"gen-{sampler}", seeds=[1, 2], steps=steps,
                                                           sampler=sampler, preview_every=2))
        if reply["type"] != "result":
            failures[sampler] = reply
        elif [f["step"] for f in before] != list(range(1, steps + 1)):
            failures[sampler] = f"progress {[f['step'] for f in before]}"
        elif [f["step"] for f in before if "preview" in f] != [2]:
            failures[sampler] = f"previews at {[f['step'] for f in before if 'preview' in f]}"
        elif len(rc.pixels(reply)) != 2:
            failures[sampler] = "wrong image count"
    assert not failures


def test_unknown_sampler_is_an_invalid_request(runner):
    reply, _ = runner.request(rc.generate_message("gen-bad", sampler="Nope"))
    assert (reply["type"], reply["code"]) == ("error", "invalid_request")
    assert "Euler" in reply["message"]


def test_previews_come_every_n_steps_but_never_on_the_last(runner):
    reply, before = runner.request(rc.generate_message("gen-preview", seeds=[1], steps=6, size=64, width=128,
                                                       preview_every=2))
    assert reply["type"] == "result", reply
    assert [f["step"] for f in before] == [1, 2, 3, 4, 5, 6]
    assert [f["step"] for f in before if "preview" in f] == [2, 4]
    for frame in before:
        if "preview" not in frame:
            continue
        preview = frame["preview"]
        assert set(preview) == {"format", "width", "height", "data"}
        decoded = rc.decode(preview)
        assert (preview["format"], decoded.format, decoded.mode) == ("jpeg", "JPEG", "RGB")
        assert decoded.size == (preview["width"], preview["height"])
        assert max(decoded.size) <= 256
        assert decoded.width == 2 * decoded.height  # the 128x64 request's aspect
    assert rc.decode(reply["images"][0]).size == (128, 64)


def test_merged_members_get_the_images_each_would_get_alone(runner):
    members = [{"prompt": "a lighthouse", "negative_prompt": "", "seeds": [21, 22], "infotexts": ["a", "b"]},
               {"prompt": "a red fox in snow", "negative_prompt": "blurry", "seeds": [23], "infotexts": ["c"]},
               {"prompt": "", "negative_prompt": "", "seeds": [21], "infotexts": ["d"]}]
    shared = {"sampler": "Euler a", "steps": 3, "preview_every": 2}
    merged = rc.generate_message("gen-merged", **shared)
    for name in ("prompt", "negative_prompt", "seeds", "infotexts"):
        del merged[name]
    reply, before = runner.request({**merged, "members": members})
    assert reply["type"] == "result", reply
    assert [(image["member"], image["seed"]) for image in reply["images"]] == [(0, 21), (0, 22), (1, 23), (2, 21)]
    assert [rc.decode(image).info["parameters"] for image in reply["images"]] == ["a", "b", "c", "d"]
    previews = [frame["previews"] for frame in before if "previews" in frame]
    assert len(previews) == 1 and len(previews[0]) == 3 and not any("preview" in frame for frame in before)
    batched = rc.pixels(reply)
    alone = []
    for index, member in enumerate(members):
        single, _ = runner.request(rc.generate_message(f"gen-alone-{index}", **shared, **member))
        assert "member" not in single["images"][0]
        alone += rc.pixels(single)
    # Batched matrix products may round differently from single ones: equal within a step or two.
    differences = [int(np.abs(b - a).max()) for b, a in zip(batched, alone)]
    assert len(differences) == 4 and max(differences) <= 2, differences
    assert not np.array_equal(batched[0], batched[3])  # same seed, other prompt


@pytest.mark.parametrize("extra", [{}, {"preview_every": 0}])
def test_no_previews_unless_asked(runner, extra):
    reply, before = runner.request(rc.generate_message("gen-no-preview", seeds=[1], steps=3, **extra))
    assert reply["type"] == "result", reply
    assert [f["step"] for f in before] == [1, 2, 3]
    assert not any("preview" in f for f in before)


@pytest.mark.parametrize("value", [-1, 1.5, "2", True, None])
def test_bad_preview_every_is_an_invalid_request(runner, value):
    reply, before = runner.request(rc.generate_message("gen-bad-preview", preview_every=value))
    assert (reply["type"], reply["code"]) == ("error", "invalid_request")
    assert "preview_every" in reply["message"]
    assert before == []


def start_long_generation(runner, request_id):
    """Starts a long generation and returns once its first progress frame arrived."""
    runner.send(rc.generate_message(request_id, seeds=[1], steps=LONG_STEPS))
    frame = runner.recv()
    assert (frame["type"], frame["id"]) == ("progress", request_id), frame


def test_cancel_stops_at_a_step_boundary_and_the_runner_goes_on(runner):
    start_long_generation(runner, "gen-long")
    sent = time.monotonic()
    runner.send({"type": "cancel", "id": "gen-long"})
    reply, before = runner.reply_to("gen-long", timeout=30)
    assert time.monotonic() - sent < 10
    assert (reply["type"], reply["code"]) == ("error", "cancelled")
    match = re.fullmatch(rf"cancelled at step (\d+) of {LONG_STEPS}", reply["message"])
    assert match and int(match.group(1)) < LONG_STEPS
    assert int(match.group(1)) == max([1] + [f["step"] for f in before])
    after, _ = runner.request(rc.generate_message("gen-after-cancel", seeds=[1]))
    assert after["type"] == "result"


def test_ping_and_busy_are_answered_during_a_generation(runner):
    start_long_generation(runner, "gen-ping")
    runner.send({"type": "ping", "id": "ping-1"})
    runner.send(rc.generate_message("gen-second"))
    pong = busy = None
    while pong is None or busy is None:
        frame = runner.recv(timeout=10)
        if frame["type"] == "pong":
            pong = frame
        elif frame.get("id") == "gen-second":
            busy = frame
        else:
            assert (frame["type"], frame["id"]) == ("progress", "gen-ping"), "generation ended first"
    assert pong["id"] == "ping-1"
    assert (busy["type"], busy["code"]) == ("error", "busy")
    runner.send({"type": "cancel", "id": "gen-ping"})
    reply, _ = runner.reply_to("gen-ping", timeout=30)
    assert reply["code"] == "cancelled"


def test_shutdown_says_bye_and_exits_0(runner):
    runner.send({"type": "shutdown"})
    assert runner.recv() == {"type": "bye"}
    assert runner.wait_exit() == 0
