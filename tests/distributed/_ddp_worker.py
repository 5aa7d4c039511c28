"""One rank of the fast 2-process test: init_distributed(LAUNCHER), DDP on CPU, 3 SGD steps on sample RANK of
each batch of 2; rank 0 writes what it saw and the final weights to OUT (argv: launcher, out path)."""
import importlib.util
import json
import os
import sys

import torch
import torch.distributed as dist


def _distributed_module():
    """pe_dense/engine/distributed.py alone (torch only): importing the package would load mmdet for nothing."""
    import pe_dense

    path = os.path.join(os.path.dirname(pe_dense.__file__), "engine", "distributed.py")
    spec = importlib.util.spec_from_file_location("_pe_dense_distributed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(launcher: str, out: str) -> None:
    rank, world = _distributed_module().init_distributed(launcher)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=None)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    data = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(2, 4, generator=data), torch.randn(2, 1, generator=data)
        loss = torch.nn.functional.mse_loss(ddp(x[rank:rank + 1]), y[rank:rank + 1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    if rank == 0:
        env = {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
        torch.save(model.state_dict(), out + ".pt")
        with open(out + ".json", "w") as f:
            json.dump(dict(rank=rank, world=world, backend=dist.get_backend(), env=env), f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
