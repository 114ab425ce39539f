"""The stable-diffusion.cpp engine in a real runner (`--engine stable-diffusion.cpp`) on the
full-size random SD1.5 checkpoint, loaded once with q8_0; 64x64, one step."""

import pathlib

import pytest
import runner_client as rc

pytest.importorskip("stable_diffusion_cpp", reason="the optional stable-diffusion.cpp engine is not installed "
                                                  "(easel setup --install-engine stable-diffusion.cpp)")

from easel_runner import fullsize  # noqa: E402  (imports torch: after the skip)

ENGINE = "stable-diffusion.cpp"


def sdcpp_load(request_id, path, fmt="single_file", **options):
    message = rc.load_message(request_id, path, fmt=fmt, architecture=None)
    return {**message, "engine": ENGINE, "weight_type": "q8_0", **options}


@pytest.fixture(scope="module")
def checkpoint():
    return fullsize.ensure().single_file


@pytest.fixture(scope="module")
def runner(tmp_path_factory, checkpoint):
    runner, hello = rc.start(tmp_path_factory.mktemp("sdcpp") / "runner.log", arguments=["--engine", ENGINE])
    runner.hello = hello
    yield runner
    runner.close()


def test_hello_describes_the_engine_and_that_cancel_ends_the_runner(runner):
    hello = runner.hello
    assert hello["engines"] == [ENGINE]
    assert hello["cancel"] == "exit"
    assert {"Euler", "Euler a", "DPM++ 2M Karras"} <= set(hello["samplers"])
    assert hello["schedulers"] == ["automatic", "karras", "exponential", "sgm_uniform"]
    assert {"f16", "q8_0", "q4_0"} <= set(hello["weight_types"])


def test_a_corrupt_gguf_is_a_clear_load_error(runner, tmp_path):
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    reply, _ = runner.request(sdcpp_load("load-corrupt", corrupt, fmt="gguf"))
    assert reply["code"] == "model_load_failed"
    assert "not a readable GGUF file" in reply["message"]
    runner.send({"type": "ping", "id": "ping-after-corrupt"})
    assert runner.recv() == {"type": "pong", "id": "ping-after-corrupt"}


def test_generates_reproducibly_with_progress(runner, checkpoint):
    loaded, _ = runner.request(sdcpp_load("load-1", checkpoint), timeout=600)
    assert loaded["type"] == "loaded", loaded
    assert (loaded["engine"], loaded["architecture"], loaded["dtype"]) == (ENGINE, "sd1", "q8_0")
    results = []
    for index in range(2):
        reply, before = runner.request(rc.generate_message(f"gen-{index}", seeds=(7,), steps=1), timeout=600)
        assert reply["type"] == "result", reply
        assert [(f["step"], f["total"]) for f in before if f["type"] == "progress"] == [(1, 1)]
        results.append(reply)
    image = rc.decode(results[0]["images"][0])
    assert image.size == (64, 64)
    assert image.info["parameters"].startswith("a lighthouse at dusk\nSteps: 1")
    # The same seed gives the same pixels, also after the progress callback was reset.
    assert (rc.pixels(results[0])[0] == rc.pixels(results[1])[0]).all()


@pytest.mark.parametrize(("extra", "code", "field"), [
    ({"mask": rc.png_base64(rc.Image.new("L", (64, 64), 255)),
      "init_image": rc.png_base64(rc.Image.new("RGB", (64, 64))), "denoising_strength": 1.0}, "invalid_input", "mask"),
    ({"sampler": "DPM++ 2M Karras", "scheduler": "exponential"}, "invalid_input", "scheduler"),
    ({"sampler": "LMS"}, "invalid_request", None),
])
def test_requests_it_cannot_serve_are_refused_before_generating(runner, extra, code, field):
    message = {**rc.generate_message("gen-refused", seeds=(1,), steps=1), **extra}
    reply, _ = runner.request(message)
    assert (reply["code"], reply.get("field")) == (code, field)


def test_a_missing_binding_names_the_install_command(tmp_path):
    fake = tmp_path / "stable_diffusion_cpp"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('simulated: not installed')\n")
    runner, _ = rc.start(tmp_path / "runner.log", extra_path=[tmp_path], arguments=["--engine", ENGINE])
    try:
        reply, _ = runner.request(sdcpp_load("load-missing", pathlib.Path("/nonexistent.safetensors")))
    finally:
        runner.close()
    assert reply["code"] == "engine_unavailable"
    assert "--install-engine stable-diffusion.cpp" in reply["message"]
