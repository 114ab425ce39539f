"""The benchmark sections. Each takes the run's `Bench` and returns a `Section` whose
checks compare two things measured side by side in this run (or one against the
machine's own peak): these machines are shared and noisy, so absolute times alone
would say little."""

import concurrent.futures
import importlib
import statistics
import threading
import time

import requests

from easel import peak_rss_bytes, rss_bytes
from machine import peak_formula
from report import Section, at_least, at_most, megabytes, not_measured, seconds


def headline(bench):
    section = Section("headline", "1. Seed headline: one-shot CLI per image vs a running server", (
        "The complaint Easel answers: a script that shells out to a one-shot generator reloads the model for "
        "every image. Each image is generated once by `easel generate` (start, load, generate, exit) and once "
        "by a running `easel serve` over HTTP, interleaved, with a different prompt per image."))
    count = bench.knobs.images
    cli_walls, cli_loads, server_walls = [], [], []
    with bench.easel.server() as server:
        ready = server.wait_ready()
        for index in range(count):
            wall, printed = bench.easel.generate(bench.generation(index), bench.workdir / f"cli-{index}.png")
            cli_walls.append(wall)
            cli_loads.append(printed["load"])
            server_walls.append(server.txt2img_png(bench.generation(index))[0])
    cli, served = sum(cli_walls), sum(server_walls)
    section.row("images", f"{count} at {bench.knobs.size}×{bench.knobs.size}, {bench.knobs.steps} steps")
    section.row("one-shot CLI, all images", seconds(cli))
    section.row("one-shot CLI, per image (mean; of it, runner start and load)",
                f"{seconds(cli / count)} ({seconds(statistics.mean(cli_loads))})")
    section.row("server start until /health 200 (model preloaded)", seconds(ready))
    section.row("server, all images", seconds(served))
    section.row("server, per image (mean)", seconds(served / count))
    section.row("speed-up counting the server's start-up too", f"{cli / (served + ready):.2f}×")
    section.checks.append(at_least("images through a running server vs one-shot CLI", cli / served, 5, "×"))
    return section


def overhead(bench):
    section = Section("overhead", "2. Overhead: engine alone vs end to end over HTTP", (
        "The same generation, repeated. The engine's own time is `engine_seconds`, which the runner measures "
        "around the pipeline call inside its process; the end-to-end time is what an HTTP client waits: "
        "synchronous `POST /v1/txt2img` (PNG bytes), and asynchronous `POST /v1/jobs`, following its "
        "events to `succeeded`, then `GET` the image. Overhead = (end to end − engine) / engine, median of "
        "the runs; the two kinds alternate."))
    generation = bench.generation(0)
    sync, jobs = [], []
    with bench.easel.server() as server:
        server.wait_ready()
        server.txt2img_png(generation)  # the first call at this size pays for kernel selection
        for _ in range(bench.knobs.overhead_runs):
            sync.append(server.txt2img_png(generation))
            jobs.append(server.job_png(generation))
    section.row("runs of each kind", bench.knobs.overhead_runs)
    for label, runs in (("sync", sync), ("async", jobs)):
        walls, engines = zip(*runs)
        share = statistics.median((wall - engine) / engine for wall, engine in runs) * 100
        section.row(f"{label}: end to end (median)", seconds(statistics.median(walls)))
        section.row(f"{label}: engine (median)", seconds(statistics.median(engines)))
        section.row(f"{label}: overhead (median)",
                    f"{statistics.median(wall - engine for wall, engine in runs) * 1000:.0f} ms")
        section.checks.append(at_most(f"{label} overhead over the engine", share, 2, " %"))
    return section


def concurrency(bench):
    section = Section("concurrency", "3. Concurrency: batching off vs on", (
        f"{bench.knobs.clients} clients × {bench.knobs.requests_per_client} synchronous requests at once, "
        "with compatible parameters (same model, size, steps, CFG and sampler; different prompts and seeds), "
        "against a server with `--max-batch-size 1` (batching off) and one with "
        f"`--max-batch-size {bench.knobs.max_batch_size}`. Images per minute, wall clock."))
    target = "≥ 1.3×"
    if not bench.easel.supports("serve", "--max-batch-size"):
        section.checks.append(not_measured(
            "images/min, batching on vs off", target,
            "batching not available: this `easel serve` has no --max-batch-size setting"))
        return section
    per_minute = {}
    for label, batch in (("off", 1), ("on", bench.knobs.max_batch_size)):
        with bench.easel.server(f"--max-batch-size={batch}") as server:
            server.wait_ready()
            server.txt2img_png(bench.generation(0))
            wall, count = run_clients(server, bench)
        per_minute[label] = count / wall * 60
        section.row(f"batching {label} (--max-batch-size {batch})",
                    f"{count} images in {seconds(wall)}: {per_minute[label]:.2f} images/min")
    section.checks.append(at_least("images/min, batching on vs off", per_minute["on"] / per_minute["off"], 1.3, "×",
                                   note="CPUs already busy with one image gain little from batching; "
                                        "a miss here says so rather than a fault"))
    return section


def footprint(bench):
    section = Section("footprint", "4. Footprint: memory and start-up", (
        "A server started without preloading: time until `/health` answers 200, then the first request "
        "(which loads the model) until its image arrives. Resident memory (VmRSS from /proc) of the server "
        "idle and while clients generate, sampled every 20 ms; the runner's after one image against "
        "`bench/engine_alone.py memory`, the same engine loaded and run once in a bare Python process."))
    generation = bench.generation(0)
    with bench.easel.server(preload=False) as server:
        ready = server.wait_ready()
        idle_empty = rss_bytes(server.pid)
        server.txt2img_png(generation)
        first_image = time.perf_counter() - server.started
        runner = server.runner_pid()
        runner_rss, runner_peak = rss_bytes(runner), peak_rss_bytes(runner)
        idle_loaded = rss_bytes(server.pid)
        with MemorySampler(server.pid) as loaded:
            run_clients(server, bench, requests_per_client=1)
    bare = bench.engine_alone("memory", "--size", bench.knobs.size, "--steps", bench.knobs.steps)
    section.row("server idle, before the model loads", megabytes(idle_empty))
    section.row("server idle, model loaded", megabytes(idle_loaded))
    section.row(f"server under load ({bench.knobs.clients} clients), peak", megabytes(loaded.peak))
    section.row("runner after one image (peak)", f"{megabytes(runner_rss)} ({megabytes(runner_peak)})")
    section.row("engine alone after one image (peak)",
                f"{megabytes(bare['rss_bytes'])} ({megabytes(bare['peak_rss_bytes'])})")
    section.row("start until /health 200 (no preload)", seconds(ready))
    section.row("start until the first image (loads the model)", seconds(first_image))
    section.checks += [
        at_most("server RSS idle", max(idle_empty, idle_loaded) / 2**20, 60, " MB"),
        at_most("server RSS under load", loaded.peak / 2**20, 60, " MB"),
        at_most("runner RSS vs engine alone", runner_rss / bare["rss_bytes"], 1.1, "×"),
        at_most("start until /health ready", ready, 1, " s"),
    ]
    return section


def efficiency(bench):
    size = bench.knobs.efficiency_size
    section = Section("efficiency", "5. Engine efficiency: one UNet step vs the CPU's fp32 peak", (
        f"One UNet call at {size}×{size} on a batch of 2 (the guidance pair), loaded through the runner's own "
        "engine module (its threads, dtype, attention processor and warm-up), timed after one untimed call "
        "at that size. Its FLOPs are counted with `torch.utils.flop_counter` on the meta device with the plain "
        "attention processor, since the counter sees the fused SDPA kernel as 0 FLOPs."))
    step = bench.engine_alone("unet-step", "--size", size, "--repeats", bench.knobs.efficiency_repeats)
    achieved = step["flops"] / step["median_seconds"] / 1e9
    peak = bench.machine["peak_fp32_gflops"]
    section.row("FLOPs per step", f"{step['flops'] / 1e12:.3f} TFLOP")
    section.row("step time (median; all)",
                f"{seconds(step['median_seconds'])}; " + ", ".join(f"{s:.2f}" for s in step["seconds"]))
    section.row("achieved", f"{achieved:.1f} GFLOP/s")
    section.row("fp32 peak", peak_formula(bench.machine))
    section.row("engine settings", f"{step['threads']} threads, {step['dtype']}, channels_last "
                f"{'on' if step['channels_last'] else 'off'}, attention {', '.join(step['attention'])}")
    note = "" if size == 512 else f"the target is set for 512×512; this run measured {size}×{size}"
    section.checks.append(at_least(f"share of fp32 peak at {size}×{size}", achieved / peak * 100, 75, " %", note))
    return section


def engines(bench):
    section = Section("engines", "6. Engines side by side", (
        "`bench/engines.py`: the engines Easel can run, each on the full-size fixture."))
    try:
        module = importlib.import_module("engines")
    except ModuleNotFoundError as missing:
        if missing.name != "engines":
            raise
        section.notes.append("bench/engines.py is not in this checkout: skipped")
        return section
    section.table = module.run(bench.fixture())
    return section


SECTIONS = {"headline": headline, "overhead": overhead, "concurrency": concurrency, "footprint": footprint,
            "efficiency": efficiency, "engines": engines}


def run_clients(server, bench, requests_per_client=None):
    """`bench.knobs.clients` threads, each sending its requests one after another;
    returns (wall seconds, images)."""
    per_client = requests_per_client or bench.knobs.requests_per_client

    def client(number):
        with requests.Session() as session:
            for request in range(per_client):
                server.txt2img_png(bench.generation(number * per_client + request), session)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(bench.knobs.clients) as pool:
        list(pool.map(client, range(bench.knobs.clients)))
    return time.perf_counter() - started, bench.knobs.clients * per_client


class MemorySampler:
    """The highest VmRSS of a process while the `with` block runs."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._done = threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def _sample(self):
        while not self._done.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid) or 0)
            time.sleep(self.interval)
