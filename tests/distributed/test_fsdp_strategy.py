"""--strategy fsdp on CPU: torch's FSDP runs on gloo here (device_id='cpu'), with mmengine's FlexibleRunner.

Fixed in our code (pe_dense/engine/fsdp.py): mmengine clips FSDP gradients shard by shard. The fast test shows the
upstream clipping differs from clipping the full gradient and ours does not; the slow test shows training with
clip_grad then gives the same weights on 1 and 2 ranks, and that full (rank-0 gathered) checkpoints resume.
"""
import os
import subprocess
import sys

import pytest
import torch
from _runs import DETA_CFG, TIMEOUT, base_env, free_port, load_ckpt, max_abs_diff, run_torchrun, train_args

HERE = os.path.dirname(os.path.abspath(__file__))
ATOL = 1e-5  # as test_data_parallel.py: float32 reduction order, a few SGD steps


def _full_clip(norm_type, max_norm=5.0):
    g = torch.arange(1.0, 11.0) * torch.tensor([1.0, -1.0]).repeat(5)
    p = torch.nn.Parameter(torch.zeros_like(g))
    p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_([p], max_norm=max_norm, norm_type=norm_type)
    return p.grad, float(total)


def test_sharded_clipping_equals_clipping_the_full_gradient(tmp_path):
    port = free_port()
    out = str(tmp_path / "clip")
    procs = []
    for rank in range(2):
        env = base_env(1)
        env.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "_clip_worker.py"), out], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    ranks = [torch.load(f"{out}.rank{r}.pt") for r in range(2)]
    for norm_type in (2.0, float("inf")):
        want_grad, want_total = _full_clip(norm_type)
        ours = torch.cat([r[("sharded", norm_type)][0] for r in ranks])
        torch.testing.assert_close(ours, want_grad)
        assert all(abs(r[("sharded", norm_type)][1] - want_total) < 1e-4 for r in ranks)
        upstream = torch.cat([r[("upstream", norm_type)][0] for r in ranks])
        assert not torch.allclose(upstream, want_grad, atol=1e-3), "upstream clips each shard by its own norm"
    # hand-computed: norm 2 of 1..10 is sqrt(385); every element scaled by 5 / sqrt(385)
    assert abs(_full_clip(2.0)[1] - 385 ** 0.5) < 1e-4


@pytest.mark.slow
def test_fsdp_one_and_two_ranks_train_alike_and_full_checkpoints_resume(demo_data, tmp_path):
    """With clip_grad (the demo's max_norm=1.0): FSDP on 1 rank x batch 2 (4 iterations) == 2 ranks x batch 1
    (2 iterations, then resumed from rank 0's full checkpoint to 4). The checkpoint is one file with the model's
    own parameter names, loadable without FSDP."""
    import pe_dense.heads.deta  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import pe_dense.mm  # noqa: F401

    fsdp = ["--strategy", "fsdp"]
    one, two = tmp_path / "one", tmp_path / "two"
    run_torchrun(train_args(DETA_CFG, one, demo_data, batch=2, extra=fsdp), nproc=1)
    run_torchrun(train_args(DETA_CFG, two, demo_data, batch=1, extra=fsdp, options=["train_cfg.max_iters=2"]))
    a2, b2 = load_ckpt(one / "iter_2.pth"), load_ckpt(two / "iter_2.pth")
    assert max_abs_diff(a2["state_dict"], b2["state_dict"]) < ATOL
    run_torchrun(train_args(DETA_CFG, two, demo_data, batch=1, extra=[*fsdp, "--resume", str(two / "iter_2.pth")]))
    a4, b4 = load_ckpt(one / "iter_4.pth"), load_ckpt(two / "iter_4.pth")
    assert b4["meta"]["iter"] == 4
    assert max_abs_diff(a2["state_dict"], a4["state_dict"]) > 1e-3
    assert max_abs_diff(a4["state_dict"], b4["state_dict"]) < ATOL

    cfg = Config.fromfile(DETA_CFG)
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(cfg.model)
    own = model.state_dict()
    assert set(b4["state_dict"]) == set(own)
    model.load_state_dict(b4["state_dict"], strict=True)


def test_full_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    """A write that dies half-way leaves the previous checkpoint and no temporary file; a good write replaces it."""
    from mmengine._strategy import FSDPStrategy

    from pe_dense.engine import fsdp

    target = tmp_path / "iter_4.pth"
    target.write_bytes(b"previous")

    def dying_save(self, filename, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt  # the process is interrupted while writing

    strategy = object.__new__(fsdp.PEFSDPStrategy)
    monkeypatch.setattr(fsdp.PEFSDPStrategy, "_is_full_state_dict", lambda self: True)
    monkeypatch.setattr(fsdp, "is_main_process", lambda: True)
    monkeypatch.setattr(FSDPStrategy, "save_checkpoint", dying_save)
    with pytest.raises(KeyboardInterrupt):
        strategy.save_checkpoint(str(target), save_optimizer=True)
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["iter_4.pth"]

    def good_save(self, filename, **kwargs):
        assert filename != str(target) and kwargs == dict(save_optimizer=True)
        with open(filename, "wb") as f:
            f.write(b"complete")

    monkeypatch.setattr(FSDPStrategy, "save_checkpoint", good_save)
    strategy.save_checkpoint(str(target), save_optimizer=True)
    assert target.read_bytes() == b"complete" and sorted(p.name for p in tmp_path.iterdir()) == ["iter_4.pth"]
