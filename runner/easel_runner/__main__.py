"""`python -m easel_runner [--engine diffusers|stable-diffusion.cpp]`: serves the runner
protocol on stdin/stdout with one engine (one runner = one model = one engine)."""

import argparse
import os
import sys
import traceback

from . import PROTOCOL_VERSION, __version__
from .errors import RunnerError
from .protocol import Connection


def main():
    # Before the heavy imports, so that anything they print goes to stderr.
    connection = Connection.from_stdio()
    from . import messages

    engine_name = _arguments().engine
    engine, description = _open_engine(engine_name)

    def handle(job):
        if job.message["type"] == "load":
            request = messages.parse_load(job.message, description.get("weight_types", ("auto",)))
            if request.engine != engine_name:
                raise RunnerError("invalid_request", f"this runner serves {engine_name}, not {request.engine}: "
                                                     f"start a runner with --engine {request.engine}")
            return {"type": "loaded", "id": job.id, "engine": engine_name, **engine.load(request)}
        request = messages.parse_generate(job.message, description["samplers"], description["schedulers"])

        def on_progress(step, total, previews=None):
            frame = {"type": "progress", "id": job.id, "step": step, "total": total}
            if previews is not None and request.merged:
                frame["previews"] = previews
            elif previews is not None and previews[0] is not None:
                frame["preview"] = previews[0]
            connection.send(frame)

        images, seconds = engine.generate(request, on_progress, job.cancelled)
        return {"type": "result", "id": job.id, "engine_seconds": seconds, "images": images}

    connection.send({"type": "hello", "protocol": PROTOCOL_VERSION, "runner_version": __version__,
                     "pid": os.getpid(), **description})
    connection.start_reader()
    while True:
        job = connection.next_job()
        if job.message["type"] == "shutdown":
            connection.send({"type": "bye"})
            _log("shutdown")
            os._exit(0)
        try:
            reply = handle(job)
        except RunnerError as exc:
            reply = exc.frame(job.id)
        except Exception as exc:  # a bug must cost one request, not the runner
            traceback.print_exc(file=sys.stderr)
            reply = {"type": "error", "id": job.id, "code": "engine_error", "message": f"{type(exc).__name__}: {exc}"}
        _log(_summary(reply))
        connection.complete(job, reply)


def _arguments():
    parser = argparse.ArgumentParser(prog="python -m easel_runner")
    parser.add_argument("--engine", choices=["diffusers", "stable-diffusion.cpp"], default="diffusers")
    return parser.parse_args()


def _open_engine(name):
    """The engine this runner serves and its part of `hello`. Only that engine's libraries
    are imported: a stable-diffusion.cpp runner never pays for torch."""
    if name == "stable-diffusion.cpp":
        from . import sdcpp
        return sdcpp.StableDiffusionCppEngine(), sdcpp.describe()
    from . import engine
    return engine.DiffusersEngine(), engine.describe()


def _summary(reply):
    if reply["type"] == "loaded":
        return (f"{reply['id']}: loaded {reply['model_id']} ({reply['architecture']}, {reply['device']}, "
                f"{reply['dtype']}) in {reply['load_seconds']} s")
    if reply["type"] == "result":
        members = len({image.get("member", 0) for image in reply["images"]})
        return f"{reply['id']}: {len(reply['images'])} image(s) for {members} job(s) in {reply['engine_seconds']} s"
    return f"{reply['id']}: {reply['code']}: {reply['message']}"


def _log(line):
    print(f"easel-runner: {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
