"""pe_dense.cli.run_cli: the one-line error contract, --debug / PE_DENSE_DEBUG, and that bugs keep their traceback;
plus the contract seen from a shell (subprocess: stderr and exit status)."""
import os
import subprocess
import sys

import pytest

from pe_dense.cli import EXIT_USER_ERROR, run_cli
from pe_dense.errors import PEDenseError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def raising(exc):
    def main(argv):
        raise exc
    return main


@pytest.mark.parametrize("exc, line", [
    (PEDenseError("image x.jpg is empty; copy it again"), "error: image x.jpg is empty; copy it again"),
    (FileNotFoundError("config 'a.py' not found"), "error: config 'a.py' not found"),
    (IsADirectoryError("image 'd' is a directory; pass a file"), "error: image 'd' is a directory; pass a file"),
    (FileExistsError(17, "File exists", "out"), "error: [Errno 17] File exists: 'out'"),
    (SystemExit("--out must end with .pkl"), "error: --out must end with .pkl"),
])
def test_expected_errors_print_one_line_and_exit_2(exc, line, capsys):
    assert run_cli(raising(exc), []) == EXIT_USER_ERROR
    assert capsys.readouterr().err == line + "\n"


def test_multi_line_messages_keep_their_listing_indented(capsys):
    assert run_cli(raising(PEDenseError("checkpoint c.pt does not fit T:\n  missing keys (1): a")), []) == 2
    assert capsys.readouterr().err == "error: checkpoint c.pt does not fit T:\n  missing keys (1): a\n"


def test_errors_re_raised_from_dataloader_workers_print_only_their_message(capsys):
    """torch's DataLoader re-raises a worker's exception with the worker traceback as the message."""
    from pe_dense.data.images import BadImageError

    wrapped = BadImageError("Caught BadImageError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                            "call last):\n  File \"x.py\", line 1, in f\n    load()\npe_dense.data.images."
                            "BadImageError: cannot read image a.jpg: file not found. Fix or remove the file\n")
    assert run_cli(raising(wrapped), []) == 2
    assert capsys.readouterr().err == "error: cannot read image a.jpg: file not found. Fix or remove the file\n"


def test_named_errors_keep_their_builtin_bases():
    from pe_dense.data.images import BadImageError
    from pe_dense.engine.data_checks import AnnotationError
    from pe_dense.engine.runner import CheckpointMismatch
    from pe_dense.models.checkpoint import CheckpointMismatchError, CheckpointReadError, UntrustedCheckpointError

    for cls, builtin in ((BadImageError, ValueError), (AnnotationError, ValueError), (CheckpointMismatch, ValueError),
                         (CheckpointReadError, ValueError), (CheckpointMismatchError, RuntimeError),
                         (UntrustedCheckpointError, RuntimeError)):
        assert issubclass(cls, PEDenseError) and issubclass(cls, builtin)


def test_unexpected_errors_keep_their_traceback(capsys):
    with pytest.raises(ZeroDivisionError):
        run_cli(raising(ZeroDivisionError("a bug")), [])
    with pytest.raises(ValueError):  # a plain ValueError may come from deep inside a library: not hidden
        run_cli(raising(ValueError("operands could not be broadcast")), [])
    assert capsys.readouterr().err == ""


def test_debug_flag_and_env_reraise_and_the_flag_is_not_passed_on(monkeypatch):
    seen = []

    def main(argv):
        seen.append(argv)
        raise PEDenseError("bad")

    with pytest.raises(PEDenseError):
        run_cli(main, ["--debug", "x"])
    assert seen == [["x"]]
    monkeypatch.setenv("PE_DENSE_DEBUG", "1")
    with pytest.raises(PEDenseError):
        run_cli(main, [])
    monkeypatch.setenv("PE_DENSE_DEBUG", "0")
    assert run_cli(main, []) == 2


def test_exit_statuses_pass_through():
    assert run_cli(lambda argv: None, []) == 0
    assert run_cli(lambda argv: 3, []) == 3
    assert run_cli(raising(SystemExit(2)), []) == 2  # argparse has printed its usage line already
    assert run_cli(raising(KeyboardInterrupt()), []) == 130


def _run(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PE_DENSE_DEBUG="")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env, **kw)


def test_demo_on_a_text_file_renamed_jpg_prints_one_line(corpus, tmp_path):
    """The issue's example: one stderr line naming the file and the fix, status 2, no traceback, no output."""
    image = os.path.join(corpus["images"], "text_renamed.jpg")
    res = _run([os.path.join(ROOT, "tools", "demo.py"), "--image", image, "--out-dir", str(tmp_path / "out")])
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: image ") and "text_renamed.jpg" in lines[0]
    assert "could not be decoded" in lines[0] and "replace it" in lines[0]
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback_of_a_real_tool(corpus, tool):
    from pe_dense.data.images import BadImageError

    with pytest.raises(BadImageError, match="text_renamed.jpg"):
        run_cli(tool("demo").main, ["--image", os.path.join(corpus["images"], "text_renamed.jpg"), "--debug"])


def test_convert_a_truncated_checkpoint_prints_one_line(corpus, tmp_path):
    src = os.path.join(corpus["checkpoints"], "truncated.pt")
    res = _run([os.path.join(ROOT, "tools", "convert_checkpoint.py"), src, str(tmp_path / "out.pth")])
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith(f"error: checkpoint {src} is truncated") and "fetch or write it again" in res.stderr
    assert os.listdir(tmp_path) == []  # nothing written, not even a temporary file
