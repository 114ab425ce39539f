"""Diffusers against stable-diffusion.cpp on the same random-weight SD1.5 model, side by side.

    python bench/engines.py [--cache DIR] [--json engines.json] [--threads N]

Every configuration runs in its own process, through the runner's own engine classes (what
Easel serves), with the same request: 256x256, 4 steps, Euler, CFG 7, one image. Measured:
seconds per denoising step (between the first and the last step callbacks, so text encoding
and VAE decoding are left out), the whole generation, the load (diffusers' includes its
64x64 warm-up step), and the process's peak resident memory. Weights are random
(easel_runner.fullsize), so speed and memory are those of a real SD1.5 checkpoint while the
images are noise: quality is not compared.
"""

import argparse
import json
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

RUNNER = pathlib.Path(__file__).resolve().parents[1] / "runner"
# (engine, weight type): diffusers runs float32 on the CPU; stable-diffusion.cpp converts
# the f16 checkpoint to the weight type at load.
CONFIGURATIONS = [("diffusers", "fp32"), ("stable-diffusion.cpp", "f16"), ("stable-diffusion.cpp", "q8_0"),
                  ("stable-diffusion.cpp", "q4_0")]
SIZE = 256
STEPS = 4
SAMPLER = "Euler"
CFG_SCALE = 7.0
SEED = 1


def run(fixture, configurations=CONFIGURATIONS, threads=0):
    """One measurement (a dict) per configuration, each from a fresh process; `fixture` is
    an `easel_runner.fullsize.Fixture`."""
    rows = []
    for engine, weight_type in configurations:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([sys.executable, str(pathlib.Path(__file__).resolve()), "--measure", engine, weight_type,
                            "--checkpoint", str(fixture.single_file), "--config-dir", str(fixture.config_dir),
                            "--threads", str(threads), "--out", out.name], check=True, cwd=RUNNER)
            rows.append(json.loads(pathlib.Path(out.name).read_text()))
    return rows


def measure(engine_name, weight_type, checkpoint, config_dir, threads):
    """Loads and generates once in this process; the measurement as a dict."""
    sys.path.insert(0, str(RUNNER))
    from easel_runner import messages

    load = messages.LoadRequest(
        model_id="sd15-random", path=checkpoint, format="single_file", architecture="sd1", config_dir=config_dir,
        device="cpu", dtype="float32" if engine_name == "diffusers" else "auto", threads=threads,
        engine=engine_name, weight_type="auto" if engine_name == "diffusers" else weight_type)
    if engine_name == "diffusers":
        from easel_runner.engine import DiffusersEngine
        engine = DiffusersEngine()
    else:
        from easel_runner.sdcpp import StableDiffusionCppEngine
        engine = StableDiffusionCppEngine()
    started = time.monotonic()
    engine.load(load)
    load_seconds = time.monotonic() - started

    step_times = []
    request = messages.GenerateRequest(
        prompt="a lighthouse at dusk", negative_prompt="", width=SIZE, height=SIZE, steps=STEPS,
        cfg_scale=CFG_SCALE, sampler=SAMPLER, seeds=[SEED], output_format="png", quality=90, infotexts=[""])
    started = time.monotonic()
    engine.generate(request, lambda step, total, preview=None: step_times.append(time.monotonic()), _NeverCancelled())
    generate_seconds = time.monotonic() - started
    return {"engine": engine_name, "weight_type": weight_type, "size": SIZE, "steps": STEPS, "sampler": SAMPLER,
            "cfg_scale": CFG_SCALE, "threads": threads, "load_seconds": round(load_seconds, 2),
            "seconds_per_step": round((step_times[-1] - step_times[0]) / (len(step_times) - 1), 2),
            "generate_seconds": round(generate_seconds, 2), "peak_rss_bytes": _peak_rss_bytes()}


class _NeverCancelled:
    @staticmethod
    def is_set():
        return False


def _peak_rss_bytes():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * 1024  # Linux counts KiB


def table(rows):
    """The measurements as a Markdown table."""
    lines = ["| engine | weights | s/step | generation s | load s | peak RSS GiB |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['engine']} | {row['weight_type']} | {row['seconds_per_step']:.2f} | "
                     f"{row['generate_seconds']:.1f} | {row['load_seconds']:.1f} | "
                     f"{row['peak_rss_bytes'] / 2**30:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python bench/engines.py", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=pathlib.Path, default=None,
                        help="fixture folder (default $EASEL_FIXTURE_CACHE, else ~/.cache/easel/fixtures)")
    parser.add_argument("--json", type=pathlib.Path, default=pathlib.Path("engines.json"),
                        help="where to write the measurements (default engines.json)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per engine; 0 for every core")
    parser.add_argument("--measure", nargs=2, metavar=("ENGINE", "WEIGHTS"), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--config-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:  # one configuration, in the child process run() starts
        row = measure(*args.measure, args.checkpoint, args.config_dir, args.threads)
        pathlib.Path(args.out).write_text(json.dumps(row))
        return
    sys.path.insert(0, str(RUNNER))
    from easel_runner import fullsize

    rows = run(fullsize.ensure(args.cache), threads=args.threads)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
