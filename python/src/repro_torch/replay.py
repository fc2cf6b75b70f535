"""Replaying a golden's windows in PyTorch and observing what the golden stores.

Each window starts from its checkpoint (parameters, BatchNorm buffers and SGD momentum buffers, under the
notebook's state_dict names), trains its steps on the batches the golden's data order gives (the notebook's
transform of the fingerprinted MNIST), with torch.optim.SGD as the notebook does, and records per step what
PyTorch can observe the way repro stores it: the loss, the accuracy, each BatchNorm layer's batch statistics
and running buffers, each parameter's gradient and update (largest magnitude and norm), and at a window's end
that is a checkpoint, the state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .data import MNIST, notebook_batch
from .plan import Window
from .record import Record, RecordError

BN_SERIES = ("batch_mean", "batch_std", "running_mean", "running_std")


@dataclass
class Observation:
    """Values PyTorch observed for a slice of one of the golden's datasets."""

    path: str
    index: Tuple  # numpy index into the dataset (a row, or a row and column)
    values: np.ndarray  # float64
    step: int
    order: Tuple  # the place in the step: sorts observations as the step runs
    place: str
    pass_: str
    layer: str


@dataclass
class WindowReplay:
    window: Window
    observations: List[Observation] = field(default_factory=list)
    images_checked: int = 0


def _largest(t: torch.Tensor) -> float:
    return float(t.detach().abs().max()) if t.numel() else 0.0


def _norm64(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t.detach().double()))


def _bit_checksum(x: torch.Tensor) -> int:
    return int(x.detach().contiguous().numpy().view(np.uint32).sum(dtype=np.uint64) % 2**32)


def check_layout(model: torch.nn.Module, record: Record, start: int) -> None:
    """The model's state_dict against the checkpoint's: every name and shape, else one line listing what misses."""
    stored = record.checkpoint(start)
    own = model.state_dict()
    missing = [n for n in stored if n not in own]
    extra = [n for n in own if n not in stored]
    shapes = [f"{n} {tuple(own[n].shape)} vs {tuple(stored[n].shape)}" for n in stored if n in own and tuple(own[n].shape) != tuple(stored[n].shape)]
    if missing or extra or shapes:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"not in the golden {', '.join(extra)}"] if extra else []) \
            + ([f"shapes {'; '.join(shapes)}"] if shapes else [])
        raise RecordError(f"{record.path}: the model does not fit the golden's state_dict: {'; '.join(parts)}")


def notebook_sgd(parameters, config) -> torch.optim.Optimizer:
    """The notebook's optimizer: torch.optim.SGD with the golden's learning rate, momentum and weight decay."""
    return torch.optim.SGD(parameters, lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay)


def replay_window(model: torch.nn.Module, record: Record, window: Window, data: MNIST, orders: List[np.ndarray],
                  device: str = "cpu", through: Optional[int] = None, optimizer: Callable = notebook_sgd,
                  transform: Callable = notebook_batch) -> WindowReplay:
    """`through`: stop after this step (default: the window's end). `optimizer(parameters, config)` and
    `transform(images, indices)` are the notebook's unless a test plants a regression in them."""
    cfg, plan = record.config, record.plan
    out = WindowReplay(window)
    end = window.end if through is None else min(through, window.end)
    state = {k: torch.from_numpy(v) for k, v in record.checkpoint(window.start).items()}
    model.load_state_dict(state)
    model.to(device)
    optimizer = optimizer(model.parameters(), cfg)
    names = [n for n, _ in model.named_parameters()]
    if window.start > 0:
        buffers = record.momentum_buffers(window.start)
        for name, p in model.named_parameters():
            optimizer.state[p]["momentum_buffer"] = torch.from_numpy(buffers[name]).to(device)
    points = record.probe_points
    column = {p: j for j, p in enumerate(points)}
    norm_columns = {p: j for j, p in enumerate([p for p in points if "/grad:" in p or "/delta:" in p])}
    batch_norms = [n for n in ("bn1", "bn2", "bn3", "bn4") if hasattr(model, n)]
    image_column = column.get("data/input/images")
    b = cfg.batch_size
    for step in range(window.start + 1, end + 1):
        epoch, k = divmod(step - 1, plan.steps_per_epoch)
        indices = orders[epoch][k * b:(k + 1) * b]
        x = transform(data.train_images, indices)
        y = torch.from_numpy(data.train_labels[indices].astype(np.int64))
        row = step - 1
        obs = out.observations
        add = lambda path, index, values, order, place, pass_, layer: obs.append(  # noqa: E731
            Observation(path, index, np.asarray(values, dtype=np.float64).reshape(-1), step, order, place, pass_, layer))
        if image_column is not None and record.kept(step):
            # The batch's images, bit for bit: the checksum of their float32 patterns (the transform's operations
            # are exact enough to give repro's bits; a checksum has no distance, so any change is a drift here).
            add("/steps/probes/checksum", (row, image_column), [_bit_checksum(x)], (0, 0), "data: input images, checksum", "data", "input")
            out.images_checked += 1
        model.train()
        optimizer.zero_grad(set_to_none=False)
        logits = model(x.to(device))
        loss = F.cross_entropy(logits, y.to(device))
        loss.backward()
        correct = int((logits.argmax(dim=1).cpu() == y).sum())
        old = [p.detach().clone() for p in model.parameters()]
        grads = [p.grad.detach().clone() for p in model.parameters()]
        optimizer.step()
        add("/steps/loss", (row,), [float(np.float32(loss.item()))], (2, 0), "loss: loss", "loss", "loss")
        add("/steps/accuracy", (row,), [float(np.float32(100 * correct / b))], (2, 1), "loss: accuracy", "loss", "loss")
        if not record.kept(step):
            continue
        for i, name in enumerate(batch_norms):
            module = getattr(model, name)
            statistics = getattr(module, "batch_statistics", None)
            values = {}
            if statistics is not None:
                values["batch_mean"], values["batch_std"] = statistics
            for buffer in ("running_mean", "running_std"):
                if hasattr(module, buffer):
                    values[buffer] = getattr(module, buffer)
            for s, series in enumerate(BN_SERIES):
                if series in values and f"/steps/{name}/{series}" in record:
                    v = values[series].detach().float().cpu().numpy()
                    add(f"/steps/{name}/{series}", (row,), v, (1, i, s), f"forward of {name}: {name}.{series}", "forward", name)
        for name, g, before, p in zip(names, grads, old, model.parameters()):
            layer = name.split(".")[0]
            grad_point, delta_point = f"backward/{layer}/grad:{name}", f"update/{layer}/delta:{name}"
            delta = p.detach().double() - before.double()
            for point, largest, norm, pass_, what in ((grad_point, _largest(g), _norm64(g), "backward", f"backward of {layer}: ∂{name}"),
                                                      (delta_point, _largest(delta), _norm64(delta), "update", f"update of {name}: new − old")):
                if point in column:
                    add("/steps/probes/largest", (row, column[point]), [largest], (3 if pass_ == "backward" else 4, column[point]),
                        f"{what}, max |x|", pass_, layer)
                if point in norm_columns and "/steps/probes/norm" in record:
                    add("/steps/probes/norm", (row, norm_columns[point]), [norm], (3 if pass_ == "backward" else 4, column[point], 1),
                        f"{what}, norm", pass_, layer)
    if end == window.end and record.is_checkpoint(window.end) and window.end > window.start:
        state = model.state_dict()
        buffers = {n: optimizer.state[p]["momentum_buffer"] for n, p in model.named_parameters()}
        for t, (name, value) in enumerate(state.items()):
            out.observations.append(Observation(f"/checkpoints/{window.end:08d}/model/{name}", (), value.detach().float().cpu().numpy().reshape(-1).astype(np.float64),
                                                window.end, (5, t), f"checkpoint {window.end:08d} {name}", "state", name.split(".")[0]))
        for t, (name, value) in enumerate(buffers.items()):
            out.observations.append(Observation(f"/checkpoints/{window.end:08d}/optimizer/momentum_buffer/{name}", (),
                                                value.detach().float().cpu().numpy().reshape(-1).astype(np.float64),
                                                window.end, (6, t), f"checkpoint {window.end:08d} momentum buffer {name}", "state", name.split(".")[0]))
    return out
