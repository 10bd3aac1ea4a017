"""A model's predictions on clips (`predict_proba`) and the score that selects a fold's weights.

`selection_score` is the pooled metric of `fdpkit.metrics` (the same definitions the run
reports), computed on the selection clips: inner validation clips of the training subjects, or,
under the opt-in `test_best`, the held-out subject (optimistic).
"""

from __future__ import annotations

import numpy as np
import torch

from fdpkit.metrics import pooled_metrics  # the run's metric definitions (see the report's change request)
from fdpkit.train.config import TrainConfig
from fdpkit.train.data import Tensors, materialise
from fdpkit.train.precision import autocast_dtype


@torch.no_grad()
def predict_proba(model: torch.nn.Module, data, batch_size: int = 64, device=None,
                  precision: str = "fp32") -> tuple[np.ndarray, Tensors]:
    """Class probabilities (N, C) float64 of every clip of `data`, in eval mode."""
    data = materialise(data)
    device = device or next(model.parameters()).device
    dtype = autocast_dtype(precision, torch.device(device))
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        x = data.frames[start:start + batch_size].to(device)
        with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            logits = model(x).logits
        out.append(torch.softmax(logits.float(), dim=1).double().cpu())
    model.train(was_training)
    return torch.cat(out).numpy(), data



def selection_score(model: torch.nn.Module, data: Tensors, config: TrainConfig, device) -> float:
    """`config.metric` (uf1, uar, accuracy) of the model's predictions on `data`."""
    probs, _ = predict_proba(model, data, config.eval_batch_size, device, config.precision)
    classes = list(range(probs.shape[1]))
    return float(pooled_metrics(data.labels.numpy(), probs.argmax(1), classes)[config.metric])
