"""Fixtures for the bad-input corpus tests: the corpus (written once per session), tools loaded as modules, and a
per-test alarm so that a hang fails the test instead of stalling the suite."""
import importlib.util
import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
TOOLS = os.path.join(os.path.dirname(__file__), "..", "..", "tools")
HANG_SECONDS = 240


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """{'images': DIR, 'coco': DIR, 'checkpoints': DIR} of the generated corpus (see _bad_input_corpus.py)."""
    from _bad_input_corpus import write_corpus

    return write_corpus(str(tmp_path_factory.mktemp("bad_inputs")))


def load_tool(name: str):
    """tools/<name>.py as a module (its ``main(argv)`` runs in-process)."""
    spec = importlib.util.spec_from_file_location(f"pe_dense_tool_{name}", os.path.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tool():
    return load_tool


@pytest.fixture(autouse=True)
def _no_hang():
    def fail(signum, frame):
        raise TimeoutError(f"test still running after {HANG_SECONDS} s: an input made an entry point hang")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(HANG_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
