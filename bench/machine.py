"""What the benchmark ran on, and the CPU's theoretical fp32 peak."""

import importlib.metadata
import os
import pathlib
import platform
import re
import subprocess

# Instruction-set flags worth printing: they decide the kernels torch can use.
_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


def _lscpu():
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


def _cpuinfo():
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    first = text.split("\n\n", 1)[0]
    return {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in first.splitlines() if ":" in line)}


def flop_per_cycle(flags):
    """fp32 FLOP per cycle per core: two FMA units, each a multiply and an add on every
    lane (16 lanes with AVX-512, 8 with AVX2)."""
    if "avx512f" in flags:
        return 64
    if "avx2" in flags and "fma" in flags:
        return 32
    return 16 if "avx" in flags else 8


def describe(repo):
    lscpu = _lscpu()
    cpuinfo = _cpuinfo()
    flags = set((lscpu.get("Flags") or cpuinfo.get("flags", "")).split())
    sockets = int(lscpu.get("Socket(s)", "1") or 1)
    cores = sockets * int(lscpu.get("Core(s) per socket", "0") or 0) or os.cpu_count()
    if lscpu.get("CPU max MHz"):
        clock_mhz, clock_source = float(lscpu["CPU max MHz"]), "lscpu CPU max MHz"
    else:
        clock_mhz, clock_source = float(cpuinfo.get("cpu MHz", "0") or 0), "/proc/cpuinfo cpu MHz"
    per_cycle = flop_per_cycle(flags)
    return {
        "cpu": lscpu.get("Model name") or cpuinfo.get("model name") or platform.processor(),
        "cores": cores,
        "logical_cpus": os.cpu_count(),
        "clock_mhz": clock_mhz,
        "clock_source": clock_source,
        "flags": [flag for flag in _FLAGS if flag in flags],
        "fp32_flop_per_cycle_per_core": per_cycle,
        "peak_fp32_gflops": cores * clock_mhz / 1000 * per_cycle,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "diffusers": _version("diffusers"),
        "transformers": _version("transformers"),
        "git_commit": _git(repo, "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git(repo, "status", "--porcelain", "--untracked-files=no")),
        "swift": _swift_version(),
    }


def peak_formula(machine):
    return (f"{machine['cores']} cores × {machine['clock_mhz'] / 1000:.2f} GHz × "
            f"{machine['fp32_flop_per_cycle_per_core']} FLOP/cycle = {machine['peak_fp32_gflops']:.1f} GFLOP/s")


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(repo, *arguments):
    try:
        return subprocess.run(["git", *arguments], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _swift_version():
    try:
        text = subprocess.run(["swift", "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.search(r"Swift version ([\w.\-]+)", text)
    return match.group(1) if match else None
