"""``watch`` moves its numbers to the host once per recorded step, never once per layer.

Every way a tensor's values reach Python (``tolist``, ``item``, ``float()``, ``int()``,
``bool()``, ``.cpu()``, ``.numpy()``) is counted while gradsight's own code makes the call;
on a GPU each would be a synchronisation. The optimizer's and GradScaler's own calls are not
gradsight's and are not counted, nor are the ``float()`` of ``_reduce._at_most``/``_below``,
which round Python constants (saturation bounds) to a dtype on the CPU: no device data.
"""

from __future__ import annotations

import collections
import os
import sys

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from gradsight.adapters.torch import watch  # noqa: E402

PACKAGE = os.path.dirname(sys.modules["gradsight"].__file__)
CONSTANTS = {"_at_most", "_below"}  # CPU tensors made from Python floats
HOST = ("tolist", "item", "__float__", "__int__", "__bool__", "__index__", "cpu", "numpy")


@pytest.fixture
def host_calls(monkeypatch):
    """A Counter of the host transfers that gradsight's code makes while ``on[0]``."""
    calls: collections.Counter[str] = collections.Counter()
    on = [False]

    def counting(name):
        original = getattr(torch.Tensor, name)

        def method(self, *args, **kwargs):
            caller = sys._getframe(1).f_code
            if on[0] and caller.co_filename.startswith(PACKAGE) \
                    and caller.co_name not in CONSTANTS:
                calls[name] += 1
            return original(self, *args, **kwargs)

        return method

    for name in HOST:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    return calls, on


def _net(inplace=False):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(inplace=inplace), nn.Linear(32, 32),
                         nn.Sigmoid(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))


@pytest.mark.parametrize("mode", ["sgd", "momentum", "adam", "no-optimizer", "scaler"])
@pytest.mark.parametrize("every", [1, 3])
def test_one_host_transfer_per_recorded_step(host_calls, mode, every):
    calls, on = host_calls
    net = _net(inplace=mode == "sgd")
    opt = (torch.optim.Adam(net.parameters(), lr=1e-3) if mode == "adam" else
           torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9 if mode == "momentum" else 0))
    scaler = torch.amp.GradScaler("cpu") if mode == "scaler" else None
    X, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    per_step = []
    watched = None if mode == "no-optimizer" else opt
    with watch(net, optimizer=watched, scaler=scaler, every=every) as watcher:
        for step in range(7):
            on[0] = step > 0  # from the second step on (the first one sets things up)
            before = sum(calls.values())
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(X), y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            per_step.append(sum(calls.values()) - before)
    on[0] = False
    recorded = sorted({r.step for r in watcher.history})
    assert recorded == list(range(0, 7, every))
    assert calls["tolist"] == len([s for s in recorded if s > 0])
    assert set(calls) <= {"tolist"}, dict(calls)  # no .item()/float()/.cpu() per layer
    assert per_step[1:] == [1 if step % every == 0 else 0 for step in range(1, 7)]
    assert len(watcher.history) == len(recorded) * 7
