"""``watch`` on a model sharded by FSDP2 (``fully_shard``): two CPU processes, gloo.

Each parameter, gradient and momentum buffer is a DTensor holding one shard per rank. The
watcher squares the local shards and sums the squares over the ranks with one all-reduce;
the oracles are the whole tensors gathered with ``full_tensor()``. (FSDP1 —
``FullyShardedDataParallel`` — refuses to run without an accelerator: "FSDP needs a non-CPU
accelerator device", so it is not tested here.)
"""

from __future__ import annotations

import pytest

from _bounded import run_two_ranks

pytest.importorskip("torch")
pytest.importorskip("torch.distributed")

SCRIPT = r'''
import json, os, sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
import gradsight

STEPS = 3


def hooks(module):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def run(rank, world, rendezvous, out):
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=world)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 7), nn.ReLU(),
                        nn.Linear(7, 3))  # 7 rows: shards of unequal size
    for layer in (net[0], net[2], net[4]):
        fully_shard(layer, mesh=mesh)
    fully_shard(net, mesh=mesh)
    result = {"rank": rank, "sharded": type(net[0].weight).__name__,
              "hooks_before": hooks(net)}
    generator = torch.Generator().manual_seed(rank)  # each rank sees other data
    X = torch.randn(8, 6, generator=generator)
    y = torch.randn(8, 3, generator=generator)
    for name, momentum in (("sgd", 0.0), ("momentum", 0.9)):
        sgd = torch.optim.SGD(net.parameters(), lr=0.05, momentum=momentum)
        truth = []
        with gradsight.watch(net, optimizer=sgd, every=1) as watcher:
            for step in range(STEPS):
                sgd.zero_grad()
                ((net(X) - y) ** 2).mean().backward()
                row = {}
                for i in (0, 2, 4):
                    weight = net[i].weight
                    row[str(i)] = {"grad": float(weight.grad.full_tensor().norm()),
                                   "bias": float(net[i].bias.grad.full_tensor().norm()),
                                   "weight": float(weight.detach().full_tensor().norm()),
                                   "before": weight.detach().full_tensor().clone()}
                sgd.step()
                for i in (0, 2, 4):
                    after = net[i].weight.detach().full_tensor()
                    before = row[str(i)].pop("before")
                    row[str(i)]["update"] = float((after - before).norm())
                truth.append(row)
        result[name] = {"records": [r.to_dict() for r in watcher.history], "truth": truth}
    result["hooks_after"] = hooks(net)
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # no interpreter teardown: gloo's destructors can hang joining threads


if __name__ == "__main__":
    mp.spawn(run, args=(2, sys.argv[1], sys.argv[2]), nprocs=2)
'''


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_two_ranks(SCRIPT, tmp_path_factory.mktemp("fsdp"))


def _rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_norms_of_sharded_parameters_are_those_of_the_whole_tensors(ranks, optimizer):
    for result in ranks:
        assert result["sharded"] == "DTensor"
        run = result[optimizer]
        params = [r for r in run["records"] if r["kind"] == "param"]
        assert sorted({r["layer"] for r in params}) == ["0", "2", "4"]  # plain module paths
        assert len(params) == 3 * 3
        for record in params:
            truth = run["truth"][record["step"]][record["layer"]]
            assert _rel(record["grad_W_norm"], truth["grad"]) < 1e-5
            assert _rel(record["grad_b_norm"], truth["bias"]) < 1e-5
            assert _rel(record["weight_norm"], truth["weight"]) < 1e-5
            assert _rel(record["update_ratio"], truth["update"] / truth["weight"]) < 1e-4


def test_every_rank_records_the_same_parameter_norms_and_its_own_activations(ranks):
    a, b = (r["momentum"]["records"] for r in ranks)
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        if ra["kind"] == "param":
            assert _rel(ra["grad_W_norm"], rb["grad_W_norm"]) < 1e-6
        else:  # activations are the rank's own batch (all_reduce=False)
            assert ra["act_mean"] != pytest.approx(rb["act_mean"])


def test_no_hook_is_left(ranks):
    for result in ranks:
        assert result["hooks_after"] == result["hooks_before"]
