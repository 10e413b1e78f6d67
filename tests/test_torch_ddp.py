"""``watch`` under real DistributedDataParallel: two CPU processes, the gloo backend.

One spawned run (module fixture, a few seconds) serves every test. Each rank trains the
same DDP model on its own data; it saves what it recorded and, as oracles, the gradients
DDP left in ``.grad`` (the averages over the ranks) and its activations, gathered from both
ranks. Only rank 0 writes a report (``is_main_process``).
"""

from __future__ import annotations

import json
import math

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
from gradsight.present.report import build_report, write_json
from gradsight.adapters.torch import is_main_process

STEPS = 2


def hooks(module):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in module.modules()) + sum(
        len(getattr(p, "_post_accumulate_grad_hooks", None) or {})
        for p in module.parameters())


def run(rank, world, rendezvous, out):
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=world)
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts)
    net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 5), nn.ReLU(),
                        nn.Linear(5, 1)).double()
    with torch.no_grad():
        net[2].bias[:2] = -30.0  # units 0, 1 of the ReLU are dead on every sample
    ddp = nn.parallel.DistributedDataParallel(net)
    generator = torch.Generator().manual_seed(rank)  # each rank sees other data
    X = (1 + 2 * rank) * torch.randn(16, 3, dtype=torch.float64, generator=generator)
    y = torch.randn(16, 1, dtype=torch.float64, generator=generator)
    sgd = torch.optim.SGD(ddp.parameters(), lr=0.05)
    result = {"rank": rank, "main": is_main_process(), "hooks_before": hooks(ddp)}

    # 1. every rank records; the norms are those of DDP's averaged gradients
    truth = []
    with gradsight.watch(ddp, optimizer=sgd) as local, \
            gradsight.watch(ddp, optimizer=sgd, all_reduce=True) as shared:
        for step in range(STEPS):
            sgd.zero_grad()
            ((ddp(X) - y) ** 2).mean().backward()
            truth.append({str(i): net[i].weight.grad.norm().item() for i in (0, 2, 4)})
            if step == 0:
                with torch.no_grad():
                    a = torch.tanh(net[0](X))
                gathered = [torch.empty_like(a) for _ in range(world)]
                dist.all_gather(gathered, a)
                union = torch.cat(gathered)
                result["union_tanh"] = {"mean": float(union.mean()),
                                        "std": float(union.std(correction=0))}
            sgd.step()
    result["local"] = [r.to_dict() for r in local.history]
    result["shared"] = [r.to_dict() for r in shared.history]
    result["truth"] = truth

    # 2. without an optimizer: recorded at the end of each backward pass
    with gradsight.watch(ddp) as plain:
        ddp.zero_grad()
        ((ddp(X) - y) ** 2).mean().backward()
        result["plain_truth"] = net[0].weight.grad.norm().item()
    result["plain"] = [r.to_dict() for r in plain.history if r.layer == "0"]

    # 3. the loop raises on every rank: no hook is left behind
    try:
        with gradsight.watch(ddp, optimizer=sgd, all_reduce=True):
            sgd.zero_grad()
            ((ddp(X) - y) ** 2).mean().backward()
            sgd.step()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    result["hooks_after"] = hooks(ddp)
    result["optimizer_hooks_after"] = (len(sgd._optimizer_step_pre_hooks)
                                       + len(sgd._optimizer_step_post_hooks))

    # 4. only the main process writes the report
    if is_main_process():
        findings = gradsight.diagnose(local.history)
        write_json(build_report("ddp", findings=findings), f"{out}/report.json")
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.barrier()  # both ranks done before the group is torn down
    dist.destroy_process_group()
    os._exit(0)  # no interpreter teardown: gloo's destructors can hang joining threads


if __name__ == "__main__":
    mp.spawn(run, args=(2, sys.argv[1], sys.argv[2]), nprocs=2)
'''


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    return folder, run_two_ranks(SCRIPT, folder)


def _rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def test_every_rank_records_the_averaged_gradients(ranks):
    _, results = ranks
    for result in results:
        params = [r for r in result["local"] if r["kind"] == "param"]
        assert len(result["local"]) == 2 * 5 and len(params) == 2 * 3
        assert sorted({r["step"] for r in result["local"]}) == [0, 1]
        for record in params:  # the gradients the optimizer used: DDP's averages
            assert _rel(record["grad_W_norm"], result["truth"][record["step"]][record["layer"]]) \
                < 1e-12
    # the ranks saw different data yet hold the same (averaged) gradients
    a, b = (r["local"] for r in results)
    for ra, rb in zip(a, b, strict=True):
        if ra["kind"] == "param":
            assert _rel(ra["grad_W_norm"], rb["grad_W_norm"]) < 1e-12
        else:
            assert ra["act_mean"] != pytest.approx(rb["act_mean"])


def test_all_reduce_gives_every_rank_the_same_values(ranks):
    _, results = ranks
    a, b = (r["shared"] for r in results)
    assert len(a) == len(b) == 10
    for ra, rb in zip(a, b, strict=True):
        assert ra == rb
    locals_ = [r["local"] for r in results]
    for i, record in enumerate(a):
        if record["kind"] == "activation":  # equal batches: the mean over the whole batch
            mean = (locals_[0][i]["act_mean"] + locals_[1][i]["act_mean"]) / 2
            assert _rel(record["act_mean"], mean) < 1e-12
    tanh0 = next(r for r in a if r["layer"] == "1" and r["step"] == 0)
    assert _rel(tanh0["act_mean"], results[0]["union_tanh"]["mean"]) < 1e-12
    relu = [r for r in a if r["layer"] == "3"]
    assert all(r["dead_fraction"] >= 2 / 5 for r in relu)


def test_all_reduce_std_is_the_std_of_the_whole_batch(ranks):
    _, results = ranks
    tanh0 = next(r for r in results[0]["shared"] if r["layer"] == "1" and r["step"] == 0)
    assert _rel(tanh0["act_std"], results[0]["union_tanh"]["std"]) < 1e-9


def test_without_optimizer_the_averaged_gradient_is_recorded(ranks):
    _, results = ranks
    for result in results:
        (record,) = result["plain"]
        assert _rel(record["grad_W_norm"], result["plain_truth"]) < 1e-12


def test_no_hook_is_left_on_any_rank_even_when_the_loop_raises(ranks):
    _, results = ranks
    for result in results:
        assert result["hooks_after"] == result["hooks_before"]
        assert result["optimizer_hooks_after"] == 0


def test_only_rank_zero_is_main_and_writes_the_report(ranks):
    folder, results = ranks
    assert [r["main"] for r in results] == [True, False]
    report = json.loads((folder / "report.json").read_text())
    assert report["title"] == "ddp"
    assert sorted(p.name for p in folder.glob("report*")) == ["report.json"]
    assert all(math.isfinite(r["grad_W_norm"]) for r in results[0]["local"]
               if r["kind"] == "param")
