"""Weights & Biases for gradsight: every recorded step's readings logged to a W&B run.

::

    import wandb
    from gradsight.integrations.wandb import WandbSink

    run = wandb.init(project="my-project")
    with gradsight.watch(model, optimizer=optimizer, sinks=[WandbSink(run)]) as watcher:
        ...  # the training loop, unchanged
    run.finish()

Needs ``pip install 'gradsight[wandb]'``. The sink lives with the other sinks in
:mod:`gradsight.diagnostics.trackers`; this module is where a practitioner looks for it.
"""

from __future__ import annotations

from ..diagnostics.trackers import STEP_FIELD, WandbSink

__all__ = ["STEP_FIELD", "WandbSink"]
