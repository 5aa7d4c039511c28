"""2 processes x batch 1 train to the same parameters as 1 process x batch 2 (DDP on gloo, CPU only).

Why they can be equal: mmengine's samplers (DefaultSampler / InfiniteSampler, seeded) make one global order and give
rank r the samples r, r + W, r + 2W ... of it, so 2 ranks x batch 1 see per iteration exactly the 2 samples 1 process
x batch 2 sees. DETA divides its losses by the number of GT boxes averaged over ranks (``reduce_mean``), and DDP
averages the gradients over ranks: sum over ranks of (rank's loss sum / mean GT count) / W = (sum of all losses) /
(total GT count), the single-process loss. Gradient clipping then acts on identical averaged gradients.

Why not bit-equal: the all-reduce adds two float32 partial gradients and divides by 2, while one process accumulates
both samples inside each backward op in another order; each step differs by float32 rounding (~1e-7 relative), and
a few SGD steps keep that near 1e-7 absolute (measured 3e-8 after 3 steps). Tolerance: atol 1e-5, two orders above
the rounding and far below the parameter change of one step (asserted > 1e-3), so a wrong split (e.g. rank 1 seeing
rank 0's sample, gradients summed instead of averaged) fails.

Not covered by this equality: random augmentation and random RoI/query sampling draw from each process's own
generator (deta_tiny_sgd.py removes them), and BatchNorm (DETA on PE has none; see the seg probe test).
"""
import os

import pytest
import torch
from _runs import DETA_CFG, load_ckpt, max_abs_diff, run_single, run_slurm, run_torchrun, train_args
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

HERE = os.path.dirname(os.path.abspath(__file__))
ATOL = 1e-5
STEP = 1e-3  # the least the largest parameter change of 2 SGD steps must exceed


@HOOKS.register_module(force=True)
class _SnapshotInitHook(Hook):
    """Keep the weights the first iteration starts from (after init_weights and any resume)."""
    state = None

    def before_train(self, runner):
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        _SnapshotInitHook.state = {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def reference(demo_data, tmp_path_factory):
    """1 process x batch 2, 4 iterations, checkpoints at 2 and 4 (in this process): (work dir, initial weights)."""
    from pe_dense.engine.runner import build_config, train

    work = tmp_path_factory.mktemp("ref")
    cfg = build_config(DETA_CFG, {"data_root": demo_data.rstrip("/") + "/"}, work_dir=str(work))
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type="_SnapshotInitHook")]
    train(cfg)
    return work, _SnapshotInitHook.state


@pytest.mark.slow
def test_slurm_two_ranks_batch_one_equal_one_process_batch_two(reference, demo_data, tmp_path):
    """srun's variables only (SLURM_PROCID/NTASKS/LOCALID/NODELIST, no RANK/WORLD_SIZE): gloo, DDP on CPU."""
    ref_dir, init = reference
    logs = run_slurm(train_args(DETA_CFG, tmp_path, demo_data, batch=1, options=["train_cfg.max_iters=2"]))
    two = load_ckpt(tmp_path / "iter_2.pth")
    one = load_ckpt(ref_dir / "iter_2.pth")
    assert two["meta"]["iter"] == one["meta"]["iter"] == 2
    moved = max_abs_diff(one["state_dict"], init)
    assert moved > STEP, "the parameters must move far more than the tolerance for the comparison to mean anything"
    diff = max_abs_diff(one["state_dict"], two["state_dict"])
    assert diff < ATOL, f"2 ranks x batch 1 differ from 1 process x batch 2 by {diff:.2e} (moved {moved:.2e})"
    # the backend was chosen for a machine without GPUs and recorded in the dumped config
    assert not torch.cuda.is_available()
    dumped = (tmp_path / "deta_tiny_sgd.py").read_text()
    assert "backend='gloo'" in dumped and "backend='nccl'" not in dumped, logs[0][-2000:]


@pytest.mark.slow
def test_torchrun_checkpoints_resume_in_one_and_two_processes(reference, demo_data, tmp_path):
    """torchrun 2 ranks for 2 iterations; rank 0's iter_2.pth resumed by 1 process (batch 2) and by 2 ranks
    (batch 1) to iteration 4 both end where the uninterrupted 1-process run ends."""
    ref_dir, _ = reference
    first = tmp_path / "first"
    run_torchrun(train_args(DETA_CFG, first, demo_data, batch=1, options=["train_cfg.max_iters=2"]))
    assert max_abs_diff(load_ckpt(first / "iter_2.pth")["state_dict"],
                        load_ckpt(ref_dir / "iter_2.pth")["state_dict"]) < ATOL
    final = load_ckpt(ref_dir / "iter_4.pth")["state_dict"]
    moved = max_abs_diff(final, load_ckpt(ref_dir / "iter_2.pth")["state_dict"])
    assert moved > STEP
    for name, runner, batch in (("one", run_single, 2), ("two", run_torchrun, 1)):
        out = tmp_path / name
        runner(train_args(DETA_CFG, out, demo_data, batch=batch, extra=["--resume", str(first / "iter_2.pth")]))
        resumed = load_ckpt(out / "iter_4.pth")
        assert resumed["meta"]["iter"] == 4
        diff = max_abs_diff(final, resumed["state_dict"])
        assert diff < ATOL, f"resumed in {name} process(es): {diff:.2e} from the uninterrupted run"
        assert not (out / "iter_2.pth").exists(), "a resumed run starts at iteration 2, it does not redo it"


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["mask_rcnn", "seg_probe"])
def test_other_trainers_run_under_torchrun(trainer, demo_data, tmp_path):
    """Mask R-CNN and the seg probe train on 2 CPU ranks (gloo) and rank 0 writes a loadable checkpoint.

    Not compared with 1 process x batch 2, by construction: Mask R-CNN samples RPN anchors and RoIs at random per
    image (each process draws from its own generator) and normalises its mask loss by the positives of each rank's
    batch; the probe's plain BatchNorm normalises each rank's batch separately (SyncBN needs GPUs)."""
    if trainer == "mask_rcnn":
        cfg, data, batch = os.path.join(HERE, "mask_rcnn_tiny.py"), demo_data, 1
        options = []
    else:
        from pe_dense.features.photo_set import write_photo_seg_set

        data = str(tmp_path / "photos")
        write_photo_seg_set(data, count=4, short_side=96)
        cfg, batch = os.path.join(HERE, "..", "features", "tiny_probe_config.py"), 1
        options = ["train_cfg.max_iters=2", "default_hooks.checkpoint.interval=2"]
    work = tmp_path / "work"
    run_torchrun(train_args(cfg, work, data, batch=batch, options=options))
    ckpt = load_ckpt(work / "iter_2.pth")
    assert ckpt["meta"]["iter"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
