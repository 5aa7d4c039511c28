"""Two runners built in one process within the same second keep apart: mmengine keys a run's logger, message hub
and default scope by ``<config>_<timestamp in seconds>`` and would hand the second run the first one's."""
from _mask_rcnn_tiny import tiny_demo_cfg


def test_runners_built_in_the_same_second_have_their_own_logger_and_log_file(demo_data, tmp_path):
    from unittest import mock

    from pe_dense.engine import build_runner

    # the same timestamp for both runners, as when they are built within one second
    with mock.patch("time.strftime", return_value="20261206_120000"):
        runners = [build_runner(tiny_demo_cfg(demo_data, tmp_path / name)) for name in ("a", "b")]
    a, b = runners
    assert a.timestamp == b.timestamp == "20261206_120000"
    assert a.experiment_name != b.experiment_name
    assert a.logger is not b.logger and a.message_hub is not b.message_hub
    a.logger.warning("only in a's log")
    b.logger.warning("only in b's log")
    logs = [open(r.logger.handlers[-1].baseFilename).read() for r in runners]
    assert str(tmp_path / "a") in a.log_dir and str(tmp_path / "b") in b.log_dir
    assert "only in a's log" in logs[0] and "only in b's log" not in logs[0]
    assert "only in b's log" in logs[1] and "only in a's log" not in logs[1]
