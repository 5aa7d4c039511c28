"""One rank of the sharded-clipping test (torchrun's variables set by the test): rank r holds shard r of a gradient
vector; it clips its shard with torch's clip_grad_norm_ (what mmengine's OptimWrapper does under FSDP) and with
pe_dense's sharded_clip_grad_norm_, and writes both to OUT.rank<r>.pt."""
import sys

import torch
import torch.distributed as dist

from pe_dense.engine.distributed import init_distributed
from pe_dense.engine.fsdp import sharded_clip_grad_norm_


def main(out: str) -> None:
    rank, world = init_distributed("pytorch")
    full = torch.arange(1.0, 11.0) * torch.tensor([1.0, -1.0]).repeat(5)  # norm sqrt(385) ~ 19.6
    shard = full.chunk(world)[rank]
    results = {}
    for name, fn in (("upstream", torch.nn.utils.clip_grad_norm_), ("sharded", sharded_clip_grad_norm_)):
        for norm_type in (2.0, float("inf")):
            p = torch.nn.Parameter(torch.zeros_like(shard))
            p.grad = shard.clone()
            total = fn([p], max_norm=5.0, norm_type=norm_type)
            results[(name, norm_type)] = (p.grad.clone(), float(total))
    torch.save(results, f"{out}.rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
