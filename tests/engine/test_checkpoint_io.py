"""Loading mmengine checkpoints under torch's weights-only default; atomic checkpoint files."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from pe_dense.engine import AtomicLocalBackend, allow_mmengine_checkpoint_types

# What mmengine 0.10.7's Runner.save_checkpoint stores besides tensors: a message hub with HistoryBuffers of numpy
# arrays, numpy scalars in runtime info, tuples/strings in meta.
_MAKE_CKPT = """
import numpy as np, torch
from mmengine.logging import HistoryBuffer, MessageHub
hub = MessageHub.get_instance('t')
hub.update_scalar('train/loss', 1.5)
hub.update_scalar('train/acc', np.float64(0.25))
hub.update_info('iter', 2)
hub.update_info('np_scalar', np.float32(3.0))
ckpt = dict(meta=dict(epoch=0, iter=2, seed=0, dataset_meta=dict(classes=('a', 'b'))),
            state_dict={'w': torch.ones(2)}, message_hub=hub.state_dict(),
            optimizer=dict(state={}, param_groups=[dict(lr=0.1, betas=(0.9, 0.999), params=[0])]))
torch.save(ckpt, PATH)
"""


def _run(code: str):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)


def test_mmengine_checkpoint_fails_without_and_loads_with_allow_list(tmp_path):
    path = str(tmp_path / "ckpt.pth")
    setup = f"PATH = {path!r}\n" + _MAKE_CKPT
    before = _run(setup + "torch.load(PATH)\n")  # fresh process: nothing allow-listed yet
    assert before.returncode != 0 and "weights_only" in before.stderr.lower()
    after = _run(setup + "from pe_dense.engine import allow_mmengine_checkpoint_types\n"
                         "allow_mmengine_checkpoint_types()\n"
                         "c = torch.load(PATH)\n"
                         "assert c['message_hub']['log_scalars']['train/loss'].current() == 1.5\n")
    assert after.returncode == 0, after.stderr[-2000:]


def test_allow_list_is_not_everything(tmp_path):
    """Other pickled objects still refuse to load (the allow-list is not weights_only=False)."""
    allow_mmengine_checkpoint_types()
    path = tmp_path / "evil.pth"
    torch.save({"x": _Custom()}, path)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        torch.load(path)


class _Custom:
    pass


def test_importing_engine_does_not_change_torch_load():
    res = _run("import pe_dense.engine, torch\n"
               "from mmengine.logging import HistoryBuffer\n"
               "safe = torch.serialization.get_safe_globals()\n"
               "assert HistoryBuffer not in safe, safe\n")
    assert res.returncode == 0, res.stderr[-2000:]


def test_atomic_put_replaces_and_leaves_no_temp(tmp_path):
    backend = AtomicLocalBackend()
    target = tmp_path / "sub" / "iter_2.pth"
    backend.put(b"first", target)
    backend.put(b"second", target)
    backend.put_text("iter_2.pth", tmp_path / "last_checkpoint")
    assert target.read_bytes() == b"second"
    assert (tmp_path / "last_checkpoint").read_text() == "iter_2.pth"
    assert sorted(os.listdir(target.parent)) == ["iter_2.pth"]


def test_atomic_put_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    backend = AtomicLocalBackend()
    target = tmp_path / "epoch_1.pth"
    backend.put(b"good checkpoint", target)

    def crash(src, dst):
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b"half-written", target)
    assert target.read_bytes() == b"good checkpoint"
    assert os.listdir(tmp_path) == ["epoch_1.pth"]


def test_checkpoint_hook_uses_the_atomic_backend():
    from mmengine.fileio import get_file_backend
    assert isinstance(get_file_backend("/x/y.pth", backend_args=dict(backend="pe_atomic_local")),
                      AtomicLocalBackend)
    # HistoryBuffer stays a plain data container (what the allow-list trusts).
    from mmengine.logging import HistoryBuffer
    state = HistoryBuffer([1.0], [1]).__dict__
    assert {type(v) for v in state.values()} <= {np.ndarray, int}


def test_restricted_getattr_only_serves_history_buffer_methods():
    from mmengine.logging import HistoryBuffer

    from pe_dense.engine.checkpoint_io import _history_buffer_getattr
    assert _history_buffer_getattr(HistoryBuffer, "mean") is HistoryBuffer.mean
    for obj, name in [(HistoryBuffer, "__init__"), (HistoryBuffer, "_statistics_methods"), (os, "system"),
                      (HistoryBuffer, "register_statistics")]:
        with pytest.raises(ValueError, match="only HistoryBuffer statistics"):
            _history_buffer_getattr(obj, name)
