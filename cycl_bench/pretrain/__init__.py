"""Pretraining under a precision schedule with PyTorch Lightning, cached by config hash.

`config.PretrainConfig` (light, imported by the experiment config) says how; `run.pretrain`
does it and `models.checkpoint.load_pretrained` restores the weights. The Lightning pieces live in
`module.py` (the LightningModule) and `callback.py` (the `CyclicPrecision` callback).
"""
