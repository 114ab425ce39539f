"""A runner whose server goes away."""

import runner_client as rc


def test_end_of_input_exits_0(tmp_path):
    runner, _ = rc.start(tmp_path / "runner.log")
    try:
        runner.proc.stdin.close()
        assert runner.wait_exit() == 0
    finally:
        runner.close()
