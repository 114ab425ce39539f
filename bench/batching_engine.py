"""Does batching help this machine? Images per second of the diffusers engine alone at batch
sizes 1, 2, 4, 8 (one pipeline call per batch, one generator per image, as the runner does
for merged jobs), measured side by side in one process.

    python bench/batching_engine.py [--model fullsize|tiny] [--device auto] [--size 256] [--steps 4]

The full-size model is Stable Diffusion 1.5's architecture with random weights, built in
memory (speed does not depend on weight values), so this runs on a bare GPU machine with
no files beside the repository. Prints a Markdown table; `--json PATH` also writes JSON.
"""

import argparse
import json
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "runner"))

import torch  # noqa: E402

from easel_runner import fullsize, tiny  # noqa: E402


def build_pipeline(model, device):
    pipe = fullsize.build() if model == "fullsize" else tiny.build()
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe = pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(pipe, device, batch, images, size, steps):
    calls = max(1, images // batch)
    generate = lambda seed0: pipe(  # noqa: E731
        prompt=[f"a photo of a lighthouse, variation {seed0 + i}" for i in range(batch)],
        generator=[torch.Generator(device).manual_seed(seed0 + i) for i in range(batch)],
        width=size, height=size, num_inference_steps=steps, guidance_scale=7.0, output_type="pil")
    generate(0)  # first call at this batch size: kernel selection, allocator growth
    synchronize(device)
    started = time.perf_counter()
    for call in range(calls):
        generate(call * batch)
    synchronize(device)
    return calls * batch / (time.perf_counter() - started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("fullsize", "tiny"), default="fullsize")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--images", type=int, default=8, help="images per batch size (default 8)")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    pipe = build_pipeline(args.model, device)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        rate = images_per_second(pipe, device, batch, args.images, args.size, args.steps)
        rows.append({"batch": batch, "images_per_second": rate})
        print(f"batch {batch}: {rate:.3f} images/s", file=sys.stderr, flush=True)
    single = rows[0]["images_per_second"]
    print(f"\n{args.model} SD1.5-layout model, {args.size}x{args.size}, {args.steps} steps, cfg 7, "
          f"{device.type} ({machine}), torch {torch.__version__}\n")
    print("| batch | images/s | vs batch 1 |\n| ---: | ---: | ---: |")
    for row in rows:
        row["speedup"] = row["images_per_second"] / single
        print(f"| {row['batch']} | {row['images_per_second']:.3f} | {row['speedup']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "device": device.type, "machine": machine,
                                         "size": args.size, "steps": args.steps, "torch": torch.__version__,
                                         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
