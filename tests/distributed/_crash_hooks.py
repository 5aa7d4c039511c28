"""Test-only parts a training subprocess imports (``custom_imports``) so a SIGKILL lands at a known point.

- ``_PauseHook``: with ``$PE_TEST_PAUSE_AT=N``, after iteration N's optimizer step (and any checkpoint of N),
  write ``<work_dir>/paused`` and sleep: the test kills the process there, mid-training, with state in memory
  newer than the last checkpoint.
- backend ``pe_test_stalling_atomic``: the atomic checkpoint backend, but writing the file named by
  ``$PE_TEST_STALL_ON`` stops inside ``pe_dense.io.atomic_write_bytes`` after the temporary file is written and
  before it is renamed (``<work_dir>/stalled`` marks it): the test kills the process mid-checkpoint-write.
"""
import os
import time

from mmengine.fileio import register_backend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

import pe_dense.io
from pe_dense.engine.checkpoint_io import AtomicLocalBackend

STALL_ENV = "PE_TEST_STALL_ON"
PAUSE_ENV = "PE_TEST_PAUSE_AT"


@HOOKS.register_module()
class _PauseHook(Hook):
    priority = "LOWEST"

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if str(runner.iter + 1) == os.environ.get(PAUSE_ENV):
            open(os.path.join(runner.work_dir, "paused"), "w").close()
            time.sleep(3600)


class _StallingAtomicBackend(AtomicLocalBackend):
    def put(self, obj: bytes, filepath) -> None:
        if os.path.basename(str(filepath)) != os.environ.get(STALL_ENV):
            return super().put(obj, filepath)
        real_fsync = pe_dense.io.os.fsync

        def stall(fd):  # the temporary file holds every byte; the target name does not exist yet
            real_fsync(fd)
            open(os.path.join(os.path.dirname(str(filepath)), "stalled"), "w").close()
            time.sleep(3600)

        pe_dense.io.os.fsync = stall
        try:
            super().put(obj, filepath)
        finally:
            pe_dense.io.os.fsync = real_fsync


register_backend("pe_test_stalling_atomic", _StallingAtomicBackend)
