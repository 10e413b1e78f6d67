"""gradsight where practitioners train: callbacks for PyTorch Lightning and the Hugging Face
``Trainer``, and sinks for TensorBoard and Weights & Biases.

Each module needs its optional extra and imports it only when used, so ``import gradsight``
stays light; without it the first use raises a one-line error naming the install command:

* :mod:`.lightning` — ``GradsightCallback`` for ``lightning.Trainer``
  (``pip install 'gradsight[lightning]'``);
* :mod:`.transformers` — ``GradsightCallback`` for ``transformers.Trainer``
  (``pip install 'gradsight[transformers]'``);
* :mod:`.tensorboard` — ``TensorBoardSink`` and ``history_to_tensorboard``
  (``pip install 'gradsight[tensorboard]'``);
* :mod:`.wandb` — ``WandbSink`` (``pip install 'gradsight[wandb]'``).

The readings they log are those of :mod:`gradsight.diagnostics.sinks` (tags such as
``grad_norm/encoder.layer.0.attention``).
"""
