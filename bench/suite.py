"""Easel's benchmark suite: real `easel serve` and `easel generate` processes on this
machine, each section reporting a ratio measured side by side in this run against its
target. Run it through `bench/run`; docs/benchmarks.md explains the sections.
"""

import argparse
import datetime
import json
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import traceback

import machine
import report
from easel import Easel
from sections import SECTIONS

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "runner"))
PROMPTS = ["a lighthouse at dusk", "a red fox in fresh snow", "a bowl of ramen, studio light",
           "an old map of an imaginary island", "a sailboat on a calm lake at dawn", "a cat asleep on a windowsill",
           "a city street in the rain at night", "a field of sunflowers under a storm", "a steam train on a viaduct",
           "a watercolour of a mountain village"]


class Bench:
    """What every section needs: the knobs, the machine, the `easel` binary, the model."""

    def __init__(self, knobs, workdir):
        self.knobs = knobs
        self.workdir = workdir
        self.machine = machine.describe(REPO)
        self.runner_python = knobs.runner_venv / "bin" / "python"
        models = workdir / "models"
        models.mkdir()
        if knobs.model == "tiny":
            model_path = models / "tiny"
            self._runner_tool("easel_runner.tiny", "--out", model_path)
        else:
            model_path = models / "sd15-random"
            model_path.symlink_to(self.fixture().folder)
        self.model_path = model_path
        self.easel = Easel(knobs.binary, knobs.runner_venv, models, model_path.name, workdir)

    def generation(self, index):
        """The request fields of image `index`: a prompt of its own, the same size and steps."""
        prompt = PROMPTS[index % len(PROMPTS)] + (f", variation {index // len(PROMPTS)}" if index >= len(PROMPTS) else "")
        return {"prompt": prompt, "width": self.knobs.size, "height": self.knobs.size, "steps": self.knobs.steps,
                "seed": 1000 + index}

    def fixture(self):
        """The full-size random SD1.5 fixture (written on first use, ~2 GB of files)."""
        from easel_runner import fullsize

        return fullsize.ensure(self.knobs.fixture_cache)

    def engine_alone(self, probe, *arguments):
        """Runs bench/engine_alone.py in the runner's Python; returns the JSON it prints."""
        command = [str(self.runner_python), str(REPO / "bench" / "engine_alone.py"), probe,
                   "--model", str(self.model_path.resolve()), *map(str, arguments)]
        finished = subprocess.run(command, capture_output=True, text=True, check=True)
        return json.loads(finished.stdout.strip().splitlines()[-1])

    def _runner_tool(self, module, *arguments):
        environment = dict(os.environ, PYTHONPATH=str(REPO / "runner"), HF_HUB_OFFLINE="1")
        subprocess.run([str(self.runner_python), "-m", module, *map(str, arguments)], env=environment, check=True,
                       stdout=subprocess.DEVNULL)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="bench/run", description="Easel's benchmark suite; docs/benchmarks.md explains the sections.")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, from: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="a check that everything works, in minutes: the tiny model and small counts; "
                             "its numbers mean nothing")
    parser.add_argument("--model", choices=["fixture", "tiny"], default=None,
                        help="fixture: random-weight full-size SD1.5 (default); tiny: the test model")
    parser.add_argument("--images", type=int, help="headline: images (default 10)")
    parser.add_argument("--size", type=int, help="width and height of generations (default 256)")
    parser.add_argument("--steps", type=int, help="denoising steps of generations (default 4)")
    parser.add_argument("--overhead-runs", type=int, help="overhead: runs of each kind (default 5)")
    parser.add_argument("--clients", type=int, help="concurrency and footprint: clients at once (default 8)")
    parser.add_argument("--requests-per-client", type=int, help="concurrency: requests per client (default 4)")
    parser.add_argument("--max-batch-size", type=int, default=4, help="concurrency: the batching-on setting")
    parser.add_argument("--efficiency-size", type=int, help="efficiency: UNet input size (default 512)")
    parser.add_argument("--efficiency-repeats", type=int, help="efficiency: timed UNet steps (default 3)")
    parser.add_argument("--binary", type=pathlib.Path, default=None,
                        help="the easel binary (default: .build/release/easel when built, else .build/debug/easel)")
    parser.add_argument("--runner-venv", type=pathlib.Path, default=REPO / ".easel" / "runner-venv")
    parser.add_argument("--fixture-cache", type=pathlib.Path, default=None,
                        help="where the full-size fixture lives (default: $EASEL_FIXTURE_CACHE, else ~/.cache/easel/fixtures)")
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "bench" / "results",
                        help="folder for latest.md and latest.json")
    knobs = parser.parse_args(argv)
    full = {"model": "fixture", "images": 10, "size": 256, "steps": 4, "overhead_runs": 5, "clients": 8,
            "requests_per_client": 4, "efficiency_size": 512, "efficiency_repeats": 3}
    quick = {"model": "tiny", "images": 3, "size": 128, "steps": 2, "overhead_runs": 3, "clients": 4,
             "requests_per_client": 2, "efficiency_size": 128, "efficiency_repeats": 2}
    for name, value in (quick if knobs.quick else full).items():
        if getattr(knobs, name) is None:
            setattr(knobs, name, value)
    knobs.sections = [name.strip() for name in knobs.sections.split(",") if name.strip()]
    if unknown := [name for name in knobs.sections if name not in SECTIONS]:
        parser.error(f"unknown sections {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if knobs.binary is None:
        release = REPO / ".build" / "release" / "easel"
        knobs.binary = release if release.exists() else REPO / ".build" / "debug" / "easel"
    knobs.runner_venv = knobs.runner_venv.resolve()
    return knobs


def run_section(name, bench):
    print(f"bench: {name}…", file=sys.stderr, flush=True)
    try:
        section = SECTIONS[name](bench)
    except Exception as failure:  # one broken section must not lose the others' results
        traceback.print_exc()
        section = report.Section(name, name, "", error=f"{type(failure).__name__}: {failure}")
    for check in section.checks:
        print(f"bench:   {check.what}: {report.measured_text(check)} (target {check.target}) {check.verdict}",
              file=sys.stderr, flush=True)
    return section


def main(argv=None):
    knobs = parse_arguments(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="easel-bench-") as folder:
        bench = Bench(knobs, pathlib.Path(folder))
        sections = [run_section(name, bench) for name in knobs.sections]
    minutes = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60
    info = bench.machine
    build = "release" if "release" in knobs.binary.parts else "debug" if "debug" in knobs.binary.parts else "custom"
    command = "bench/run " + shlex.join(argv if argv is not None else sys.argv[1:])
    header = [
        "# Easel benchmark results", "",
        f"`{command.strip()}` on {started:%Y-%m-%d %H:%M} UTC, {minutes:.0f} min; commit {info['git_commit']}"
        f"{' (uncommitted changes)' if info['git_dirty'] else ''}; {build} build of `easel` ({knobs.binary}).",
        f"Model: {'tiny test model (numbers mean nothing)' if knobs.model == 'tiny' else 'random-weight full-size SD1.5'}; "
        f"generations {knobs.size}×{knobs.size}, {knobs.steps} steps.",
    ]
    machine_lines = [
        f"CPU: {info['cpu']}, {info['cores']} cores ({info['logical_cpus']} logical), "
        f"{info['clock_mhz']:.0f} MHz ({info['clock_source']}), flags {' '.join(info['flags'])}",
        f"fp32 peak: {machine.peak_formula(info)}",
        f"memory {info['memory_gib']} GiB, Linux {info['kernel']}, Python {info['python']}, Swift {info['swift']}",
        f"torch {info['torch']}, diffusers {info['diffusers']}, transformers {info['transformers']}",
    ]
    knobs.out.mkdir(parents=True, exist_ok=True)
    (knobs.out / "latest.md").write_text(report.markdown(header, machine_lines, sections))
    knob_values = {name: str(value) for name, value in vars(knobs).items()}
    (knobs.out / "latest.json").write_text(report.as_json(header, info, knob_values, sections))
    print(f"bench: wrote {knobs.out / 'latest.md'} and latest.json", file=sys.stderr)


if __name__ == "__main__":
    main()
