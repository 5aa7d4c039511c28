"""FSDP2 wrapping policy and the full-state-dict round trip, in process on a one-rank gloo group (fast; the two-rank
runs under torchrun and slurm are the slow tests in test_distributed.py)."""
import copy

import pytest
import torch
from torch import nn

from pe_dense.align.parallel import check_strategy, full_state, is_fsdp, load_full_state, shard_per_block
from pe_dense.align.student import build_student
from pe_dense.align.trainer import _StudentTokens
from pe_dense.models.pe import PEVisionTransformer


@pytest.fixture
def one_rank_group():
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _parts(seed=0):
    torch.manual_seed(seed)
    student = build_student("PE-Core-T16-384", config_overrides=dict(layers=2))
    return _StudentTokens(student, nn.Linear(192, 8))


def _step(parts, optimizer):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    tokens, projected = parts(x)
    (tokens.float().pow(2).mean() + projected.pow(2).mean()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _lamb(parts):
    from timm.optim import Lamb
    return Lamb(parts.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)


def test_unknown_strategy_is_named():
    with pytest.raises(ValueError, match="'zero3'.*ddp.*fsdp"):
        check_strategy("zero3")


def test_fsdp_units_and_full_state_round_trip(one_rank_group):
    from torch.distributed.tensor import DTensor

    plain = _parts()
    sharded = _parts()
    shard_per_block(sharded, sharded.student.blocks)
    assert is_fsdp(sharded) and all(is_fsdp(b) for b in sharded.student.blocks)
    assert not is_fsdp(sharded.student) and not is_fsdp(sharded.projection)  # in the root unit
    assert all(isinstance(p, DTensor) for p in sharded.parameters())
    opt_plain, opt_sharded = _lamb(plain), _lamb(sharded)
    _step(plain, opt_plain)
    _step(sharded, opt_sharded)

    model, optim = full_state(sharded, opt_sharded)
    ref_model, ref_optim = full_state(plain, opt_plain)
    assert all(type(v) is torch.Tensor for v in model.values())  # gathered, not shards
    assert model.keys() == ref_model.keys() and set(optim["state"]) == set(ref_optim["state"])
    for k in ref_model:  # one rank: the same arithmetic as the unwrapped module
        torch.testing.assert_close(model[k], ref_model[k], rtol=1e-6, atol=1e-7, msg=k)
    student = {k[len("student."):]: v for k, v in model.items() if k.startswith("student.")}
    official = PEVisionTransformer(sharded.student.cfg)
    official.load_state_dict(student, strict=True)  # the official PE layout

    fresh = _parts(seed=5)  # other weights, then the saved state: equal to the bit, optimizer state too
    shard_per_block(fresh, fresh.student.blocks)
    opt_fresh = _lamb(fresh)
    load_full_state(fresh, opt_fresh, copy.deepcopy(model), copy.deepcopy(optim))  # torch shards the dicts in place
    again, again_optim = full_state(fresh, opt_fresh)
    assert all(torch.equal(again[k], model[k]) for k in model)
    for name, st in optim["state"].items():
        for key, value in st.items():
            assert torch.equal(torch.as_tensor(again_optim["state"][name][key]), torch.as_tensor(value)), (name, key)


def test_optimizer_state_is_none_before_the_first_step():
    parts = _parts()
    opt = _lamb(parts)
    model, optim = full_state(parts, opt)
    assert optim is None and not opt.state  # torch's API would have run a dummy step (LAMB's counter + 1)
    assert opt.param_groups[0].get("step", 0) == 0
