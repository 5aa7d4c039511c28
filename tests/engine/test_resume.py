"""An interrupted and resumed run ends exactly where an uninterrupted one does (params, optimizer, iteration)."""
import pytest
import torch
from _mask_rcnn_tiny import tiny_demo_cfg
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


class Interrupted(RuntimeError):
    pass


@HOOKS.register_module(force=True)
class _TestInterruptHook(Hook):
    """Count iterations; raise after iteration ``at`` (after its checkpoint was written)."""

    priority = "LOWEST"
    done = []

    def __init__(self, at=None):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        _TestInterruptHook.done.append(runner.iter)
        if self.at is not None and runner.iter + 1 == self.at:
            raise Interrupted(f"interrupted after iteration {self.at}")


def _run(data, work_dir, interrupt_at=None, resume=None):
    from pe_dense.engine import build_runner

    # num_workers=1: random augmentation runs in a worker that mmengine re-seeds, so it replays on resume;
    # drop path makes the model side random too (IterationSeedHook keeps it exact).
    cfg = tiny_demo_cfg(data, work_dir, max_iters=4, num_workers=1, **{"default_hooks.checkpoint.interval": 2})
    cfg.model.backbone.update(frozen=False, drop_path_rate=0.2, model_overrides=dict(layers=2))
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type="_TestInterruptHook", at=interrupt_at)]
    if resume:
        cfg.resume, cfg.load_from = True, resume
    runner = build_runner(cfg)
    _TestInterruptHook.done = []
    try:
        runner.train()
    except Interrupted:
        pass
    return runner, list(_TestInterruptHook.done)


def test_resume_continues_exactly(demo_data, tmp_path):
    full, iters_full = _run(demo_data, tmp_path / "full")
    first, iters_first = _run(demo_data, tmp_path / "cut", interrupt_at=2)
    assert iters_first == [0, 1]
    resumed, iters_resumed = _run(demo_data, tmp_path / "cut", resume=str(tmp_path / "cut" / "iter_2.pth"))
    assert iters_full == [0, 1, 2, 3] and iters_resumed == [2, 3], "the resumed run must start at iteration 2"
    assert resumed.iter == full.iter == 4

    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the interrupted run's weights (after 2 iterations) differ from the final ones
    assert any(not torch.equal(a[k], v) for k, v in first.model.state_dict().items())

    oa, ob = full.optim_wrapper.state_dict(), resumed.optim_wrapper.state_dict()
    assert oa["state"].keys() == ob["state"].keys() and oa["state"]
    for pid in oa["state"]:
        for name, value in oa["state"][pid].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(ob["state"][pid][name])), (pid, name)
    assert [g["lr"] for g in oa["param_groups"]] == [g["lr"] for g in ob["param_groups"]]


@pytest.mark.slow
def test_resume_without_seed_hook_is_not_exact(demo_data, tmp_path):
    """Drop path and RoI sampling draw from the global generators: without IterationSeedHook the resumed run
    diverges (this is what the hook fixes, and shows the comparison above can fail)."""
    from pe_dense.engine import build_runner

    def run(work_dir, interrupt_at=None, resume=None):
        cfg = tiny_demo_cfg(demo_data, work_dir, max_iters=4, num_workers=1,
                            **{"default_hooks.checkpoint.interval": 2})
        cfg.model.backbone.update(frozen=False, drop_path_rate=0.2, model_overrides=dict(layers=2))
        cfg.custom_hooks = [h for h in cfg.custom_hooks if h["type"] != "IterationSeedHook"]
        cfg.custom_hooks.append(dict(type="_TestInterruptHook", at=interrupt_at))
        if resume:
            cfg.resume, cfg.load_from = True, resume
        runner = build_runner(cfg)
        try:
            runner.train()
        except Interrupted:
            pass
        return runner

    full = run(tmp_path / "full")
    run(tmp_path / "cut", interrupt_at=2)
    resumed = run(tmp_path / "cut", resume=str(tmp_path / "cut" / "iter_2.pth"))
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


pytestmark = pytest.mark.filterwarnings("ignore")
