"""The benchmark suite's own logic: knobs, the peak formula, the report. (Its
measurements run only through `bench/run`: tests never assert timings.)"""

import sys

import pytest

from easel_server import REPO

sys.path.insert(0, str(REPO / "bench"))

import machine  # noqa: E402
import report  # noqa: E402
import suite  # noqa: E402


def test_quick_picks_the_tiny_model_and_small_counts_and_flags_still_win():
    knobs = suite.parse_arguments(["--quick", "--images", "5", "--sections", "headline, footprint"])
    assert knobs.model == "tiny" and knobs.images == 5 and knobs.steps == 2
    assert knobs.sections == ["headline", "footprint"]
    full = suite.parse_arguments([])
    assert (full.model, full.images, full.size, full.steps, full.efficiency_size) == ("fixture", 10, 256, 4, 512)
    assert full.sections == list(suite.SECTIONS)
    assert "engines" in suite.SECTIONS


def test_an_unknown_section_is_refused(capsys):
    with pytest.raises(SystemExit):
        suite.parse_arguments(["--sections", "headline,speed"])
    assert "unknown sections speed" in capsys.readouterr().err


def test_the_peak_counts_two_fma_units_per_core():
    assert machine.flop_per_cycle({"avx", "avx2", "fma"}) == 32
    assert machine.flop_per_cycle({"avx", "avx2", "fma", "avx512f"}) == 64
    assert machine.flop_per_cycle({"avx"}) == 16
    info = machine.describe(REPO)
    assert info["peak_fp32_gflops"] == pytest.approx(info["cores"] * info["clock_mhz"] / 1000
                                                     * info["fp32_flop_per_cycle_per_core"])


def test_the_report_marks_each_check_and_a_failed_section():
    measured = report.Section("headline", "1. Headline", "Why.", checks=[
        report.at_least("speed-up", 6.2, 5, "×"), report.at_most("overhead", 3.1, 2, " %"),
        report.not_measured("batching", "≥ 1.3×", "batching not available")])
    measured.row("images", 10)
    failed = report.Section("footprint", "4. Footprint", "Why.", error="RuntimeError: boom")
    text = report.markdown(["# Results"], ["CPU: test"], [measured, failed])
    assert "| 1. Headline | speed-up | 6.2× | ≥ 5× | PASS |" in text
    assert "| 1. Headline | overhead | 3.1 % | ≤ 2 % | MISS |" in text
    assert "| 1. Headline | batching | n/a | ≥ 1.3× | n/a |" in text
    assert "| 4. Footprint | (section failed) | | | ERROR |" in text
    assert "- batching: batching not available" in text and "| images | 10 |" in text
