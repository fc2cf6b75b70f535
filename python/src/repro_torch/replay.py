"""Replaying a golden's windows in PyTorch and observing what the golden stores.

Each window starts from its checkpoint (parameters, BatchNorm buffers and SGD momentum buffers, under the
notebook's state_dict names), trains its steps on the batches the golden's data order gives (the notebook's
transform of the fingerprinted MNIST), with torch.optim.SGD as the notebook does, and records per step what
PyTorch can observe the way repro stores it: the loss, the accuracy, the batch's images and labels, each
BatchNorm layer's batch statistics and running buffers, each layer's output and the gradient flowing into it
(largest magnitude, through module hooks), each parameter's gradient and update (largest magnitude and norm);
and whatever else happens inside the window: the evaluation before training (window 0, with the first test
batch's forward probes), the end of an epoch (its training metrics and the validation), a checkpoint's state,
the evaluation after training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .data import MNIST, notebook_batch
from .layout import Layout, is_torch_batch_norm
from .plan import Window
from .record import Record

BN_SERIES = ("batch_mean", "batch_std", "running_mean", "running_std")
EVALUATED_SETS = ("train", "validation", "test")
# Where a probe point of repro's LeNet is read in the notebook's, whose ReLUs and max-pools are functions in
# forward, not modules: layer k's ReLU (after bn<k>, or after conv/fc without BN) and pool feed NEXT_MODULE[k].
# A ReLU's output has the largest magnitude max(0, max v) of its input v, read at the module before it; the
# gradient flowing into a ReLU or a pool is the input gradient of the module after them (a 2×2 max-pool hands
# each gradient on to one input, so the largest magnitude is the same).
NEXT_MODULE = {"1": "conv2", "2": "fc3", "3": "fc4", "4": "fc5"}
BEFORE_RELU = {"1": "conv1", "2": "conv2", "3": "fc3", "4": "fc4"}  # without BatchNorm


def observed_at(point: str) -> Optional[Tuple[str, str, bool]]:
    """A forward output or backward output-gradient point → (module, what the hook reads, through a ReLU):
    what is "output", "input", "output_gradient" or "input_gradient"; None for other points."""
    pass_, layer, what = point.split("/")
    k = layer[-1:]
    kind = layer.rstrip("0123456789")
    if (pass_, what) == ("forward", "output"):
        if kind == "pool":
            return NEXT_MODULE[k], "input", False
        if kind == "relu":
            return BEFORE_RELU[k], "output", True
        return layer, "output", kind == "bn"  # repro's BatchNorm layers carry the ReLU after them
    if (pass_, what) == ("backward", "output_gradient"):
        if kind in ("pool", "relu", "bn"):
            return NEXT_MODULE[k], "input_gradient", False
        return layer, "output_gradient", False
    return None


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


def _largest(t: torch.Tensor) -> float:
    """max |x|, in one pass without a temporary (|x| of a large activation would be one)."""
    if not t.numel():
        return 0.0
    low, high = torch.aminmax(t.detach())
    return max(-float(low), float(high))


def _norm64(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t.detach().double()))


def _bit_checksum(x: torch.Tensor) -> int:
    return int(x.detach().float().cpu().contiguous().numpy().view(np.uint32).sum(dtype=np.uint64) % 2**32)


def _batch_statistics(x: torch.Tensor, module: torch.nn.Module, epsilon: float, unbiased: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) per channel (dimension 1) of a BatchNorm layer's input, in Float64, for a module that does
    not keep `batch_statistics` itself: for torch.nn.BatchNorm's own forward the std it normalizes by,
    √(biased variance + its ε); for another module the notebook's definition."""
    x = x.detach().double().transpose(0, 1).reshape(x.shape[1], -1)
    mean = x.mean(dim=1)
    if is_torch_batch_norm(module) and type(module).forward is torch.nn.modules.batchnorm._BatchNorm.forward:
        return mean, (x.var(dim=1, unbiased=False) + module.eps).sqrt()
    return mean, (x.var(dim=1, unbiased=unbiased) + epsilon).sqrt()


class Probes:
    """Module hooks observing what repro probes inside its kernels: each layer's output and the gradient
    flowing into it (largest magnitudes), and each BatchNorm layer's batch statistics — those a module keeps
    in `batch_statistics` as (mean, std) after a training forward (the notebook's BatchNorm does), else the
    ones `_batch_statistics` computes from its input. Active only while a probed pass runs."""

    def __init__(self, model: torch.nn.Module, points: List[str], batch_norms: List[str], epsilon: float, unbiased: bool) -> None:
        modules = dict(model.named_modules())
        self.largest: Dict[str, float] = {}
        self.statistics: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}
        self.active = False
        self.observed: List[str] = []
        self._handles = []

        def keep(point: str, tensor: Optional[torch.Tensor], relu: bool) -> None:
            if self.active and tensor is not None:
                self.largest[point] = max(0.0, float(tensor.detach().max())) if relu else _largest(tensor)

        def watch_gradient(point: str, tensor: torch.Tensor) -> None:
            if self.active and tensor.requires_grad:
                tensor.register_hook(lambda g: keep(point, g, False))

        for point in points:
            where = observed_at(point)
            if where is None or where[0] not in modules:
                continue
            name, what, relu = where
            module = modules[name]
            self.observed.append(point)
            if what == "input":
                hook = module.register_forward_pre_hook(lambda m, i, point=point: keep(point, i[0], False))
            elif what == "output":
                hook = module.register_forward_hook(lambda m, i, o, point=point, relu=relu: keep(point, o, relu))
            elif what == "input_gradient":  # a hook on the tensor's gradient, set as the forward passes it
                hook = module.register_forward_pre_hook(lambda m, i, point=point: watch_gradient(point, i[0]))
            else:
                hook = module.register_forward_hook(lambda m, i, o, point=point: watch_gradient(point, o))
            self._handles.append(hook)
        for name in batch_norms:
            def statistics(m, i, name=name):
                if self.active and m.training and not hasattr(m, "batch_statistics"):
                    self.statistics[name] = _batch_statistics(i[0], m, epsilon, unbiased)
            self._handles.append(modules[name].register_forward_pre_hook(statistics))

    def start(self) -> None:
        self.largest.clear()
        self.statistics.clear()
        self.active = True

    def stop(self) -> None:
        self.active = False

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def notebook_sgd(parameters, config) -> torch.optim.Optimizer:
    """The notebook's optimizer: torch.optim.SGD with the golden's learning rate, momentum and weight decay."""
    return torch.optim.SGD(parameters, lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay)


def notebook_evaluation_mode(model: torch.nn.Module) -> None:
    """The notebook's model.eval() before every evaluation."""
    model.eval()


def check_layout(model: torch.nn.Module, record: Record, start: int) -> Layout:
    """The model against the golden's state_dict: every name and shape (RecordError with one line if not)."""
    return Layout(model, record.checkpoint(start), record.path)


class _Step:
    """Observations of one step (or of step 0's evaluation), in the golden's datasets and places."""

    def __init__(self, out: WindowReplay, step: int) -> None:
        self.out, self.step = out, step

    def add(self, path: str, index: Tuple, values, order: Tuple, place: str, pass_: str, layer: str) -> None:
        self.out.observations.append(Observation(path, index, np.asarray(values, dtype=np.float64).reshape(-1), self.step,
                                                 order, place, pass_, layer))


def _evaluate(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, batch_size: int,
              drop_last: bool, transform: Callable, device: str, probes: Optional[Probes] = None) -> Tuple[float, float, int]:
    """repro's evaluation: batches of the batch size in the given order (the last partial one unless
    drop_last), the loss summed as each batch's float32 mean × its size in Float64; `probes` watch the first batch."""
    loss_sum, correct, samples = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            if drop_last and len(chunk) < batch_size:
                break
            if probes is not None and start == 0:
                probes.start()
            logits = model(transform(images, chunk).to(device))
            if probes is not None:
                probes.stop()
            y = torch.from_numpy(labels[chunk].astype(np.int64))
            loss_sum += float(np.float32(F.cross_entropy(logits, y.to(device)).item())) * len(chunk)
            correct += int((logits.argmax(dim=1).cpu() == y).sum())
            samples += len(chunk)
    n = max(samples, 1)
    return loss_sum / n, 100 * correct / n, samples


def replay_window(model: torch.nn.Module, record: Record, window: Window, data: MNIST, orders: List[np.ndarray],
                  device: str = "cpu", through: Optional[int] = None, optimizer: Callable = notebook_sgd,
                  transform: Callable = notebook_batch, evaluation_mode: Callable = notebook_evaluation_mode) -> WindowReplay:
    """`through`: stop after this step (default: the window's end). `optimizer(parameters, config)`,
    `transform(images, indices)` and `evaluation_mode(model)` are the notebook's unless a test plants a
    regression in them."""
    cfg, plan = record.config, record.plan
    out = WindowReplay(window)
    end = window.end if through is None else min(through, window.end)
    stored = record.checkpoint(window.start)
    layout = Layout(model, stored, record.path)
    layout.load(model, stored)
    model.to(device)
    optimizer = optimizer(model.parameters(), cfg)
    names = layout.parameter_names(model)
    parameters = list(model.parameters())
    if window.start > 0:
        buffers = record.momentum_buffers(window.start)
        for name, p in zip(names, parameters):
            optimizer.state[p]["momentum_buffer"] = layout.parameter_shaped(p, buffers[name]).to(device)
    points = record.probe_points
    column = {p: j for j, p in enumerate(points)}
    norm_columns = {p: j for j, p in enumerate([p for p in points if "/grad:" in p or "/delta:" in p])}
    batch_norms = [n for n in ("bn1", "bn2", "bn3", "bn4") if f"/steps/{n}/batch_mean" in record]
    probes = Probes(model, points, batch_norms, cfg.bn_epsilon, cfg.bn_unbiased)
    b = cfg.batch_size
    train_indices, validation_indices = record.split
    limit = (lambda a: a[:cfg.evaluation_limit]) if cfg.evaluation_limit > 0 else (lambda a: a)  # noqa: E731

    def evaluate_set(which: str, observe: Optional[Probes] = None) -> Tuple[float, float, int]:
        evaluation_mode(model)
        if which == "test":
            return _evaluate(model, data.test_images, data.test_labels, limit(np.arange(len(data.test_labels))), b, False,
                             transform, device, observe)
        indices = train_indices if which == "train" else validation_indices
        return _evaluate(model, data.train_images, data.train_labels, limit(indices), b, which == "train", transform, device)

    def evaluation(phase: str, at: int) -> None:
        observe = probes if phase == "before" and "/evaluation/before/probe_largest" in record else None
        results = [evaluate_set(which, observe if which == "test" else None) for which in EVALUATED_SETS]
        obs = _Step(out, at)
        if observe is not None:
            forward = [p for p in points if p == "data/input/images" or p.startswith("forward/")]
            first = "evaluation before training, first test batch"
            x = transform(data.test_images, limit(np.arange(len(data.test_labels)))[:b])
            for k, point in enumerate(forward):
                value = _largest(x) if point == "data/input/images" else probes.largest.get(point)
                if value is None:
                    continue
                layer = point.split("/")[1]
                pass_ = "data" if point.startswith("data/") else "forward"
                what = "input images" if pass_ == "data" else "output"
                obs.add("/evaluation/before/probe_largest", (k,), [value], (1, column[point], 4), f"{first}, {pass_} of {layer}: {what}, max |x|", pass_, layer)
        for i, which in enumerate(EVALUATED_SETS):
            loss, accuracy, _ = results[i]
            obs.add(f"/evaluation/{phase}/loss", (i,), [loss], (8, i, 0), f"evaluation {phase} training: {which} loss", "evaluation", which)
            obs.add(f"/evaluation/{phase}/accuracy", (i,), [accuracy], (8, i, 1), f"evaluation {phase} training: {which} accuracy", "evaluation", which)

    if window.start == 0 and "/evaluation/before/loss" in record:
        evaluation("before", 0)

    # The running sums of the epoch the window starts in, from the golden's per-step values (as repro resumes).
    epoch = window.start // plan.steps_per_epoch if plan.steps_per_epoch else 0
    first = min(epoch * plan.steps_per_epoch, window.start)
    losses, accuracies = record.array("/steps/loss"), record.array("/steps/accuracy")
    loss_sum = sum(float(np.float32(losses[r])) * b for r in range(first, window.start))
    correct = sum(int(round(float(np.float32(accuracies[r])) * b / 100)) for r in range(first, window.start))
    samples = (window.start - first) * b

    for step in range(window.start + 1, end + 1):
        epoch, k = divmod(step - 1, plan.steps_per_epoch)
        indices = orders[epoch][k * b:(k + 1) * b]
        x = transform(data.train_images, indices)
        y = torch.from_numpy(data.train_labels[indices].astype(np.int64))
        row = step - 1
        obs = _Step(out, step)
        kept = record.kept(step)
        if kept:
            # The batch's labels and images bit for bit (their checksums: sums of float32 bit patterns; the
            # transform's operations are exact enough to give repro's bits) and their largest magnitudes.
            for point, tensor, order in (("data/input/labels", y.float(), (0, 0)), ("data/input/images", x, (0, 1))):
                j = column.get(point)
                if j is None:
                    continue
                what = point.split("/")[-1]
                obs.add("/steps/probes/checksum", (row, j), [_bit_checksum(tensor)], order + (0,), f"data: input {what}, checksum", "data", "input")
                obs.add("/steps/probes/largest", (row, j), [_largest(tensor)], order + (1,), f"data: input {what}, max |x|", "data", "input")
            probes.start()
        model.train()
        optimizer.zero_grad(set_to_none=False)
        logits = model(x.to(device))
        loss = F.cross_entropy(logits, y.to(device))
        loss.backward()
        probes.stop()
        step_correct = int((logits.argmax(dim=1).cpu() == y).sum())
        old = [p.detach().clone() for p in parameters] if kept else []  # the update probes' old values
        grads = [p.grad.detach().clone() for p in parameters] if kept else []
        optimizer.step()
        step_loss = float(np.float32(loss.item()))
        loss_sum, correct, samples = loss_sum + step_loss * b, correct + step_correct, samples + b
        obs.add("/steps/loss", (row,), [step_loss], (2, 0), "loss: loss", "loss", "loss")
        obs.add("/steps/accuracy", (row,), [float(np.float32(100 * step_correct / b))], (2, 1), "loss: accuracy", "loss", "loss")
        if kept:
            for name in batch_norms:
                module = getattr(model, name)
                output = column.get(f"forward/{name}/output", len(points))
                values = {}
                statistics = getattr(module, "batch_statistics", None) or probes.statistics.get(name)
                if statistics is not None:
                    values["batch_mean"], values["batch_std"] = statistics
                if is_torch_batch_norm(module):
                    values["running_mean"], values["running_std"] = module.running_mean, module.running_var.double().sqrt()
                else:
                    for buffer in ("running_mean", "running_std"):
                        if hasattr(module, buffer):
                            values[buffer] = getattr(module, buffer)
                for s, series in enumerate(BN_SERIES):
                    if series in values and f"/steps/{name}/{series}" in record:
                        v = values[series].detach().float().cpu().numpy()
                        obs.add(f"/steps/{name}/{series}", (row,), v, (1, output, s), f"forward of {name}: {name}.{series}", "forward", name)
            for point in probes.observed:
                if point in probes.largest:
                    pass_, layer, what = point.split("/")
                    j = column[point]
                    place = f"forward of {layer}: output" if pass_ == "forward" else f"backward of {layer}: gradient flowing in (∂L/∂output)"
                    obs.add("/steps/probes/largest", (row, j), [probes.largest[point]], (1, j, 4) if pass_ == "forward" else (3, j),
                            f"{place}, max |x|", pass_, layer)
            for name, g, before, p in zip(names, grads, old, parameters):
                layer = name.split(".")[0]
                grad_point, delta_point = f"backward/{layer}/grad:{name}", f"update/{layer}/delta:{name}"
                delta = p.detach().double() - before.double()
                for point, largest, norm, pass_, what in ((grad_point, _largest(g), _norm64(g), "backward", f"backward of {layer}: ∂{name}"),
                                                          (delta_point, _largest(delta), _norm64(delta), "update", f"update of {name}: new − old")):
                    if point not in column:
                        continue
                    order = (3 if pass_ == "backward" else 4, column[point])
                    obs.add("/steps/probes/largest", (row, column[point]), [largest], order + (0,), f"{what}, max |x|", pass_, layer)
                    if point in norm_columns and "/steps/probes/norm" in record:
                        obs.add("/steps/probes/norm", (row, norm_columns[point]), [norm], order + (1,), f"{what}, norm", pass_, layer)
        if step == end == window.end and record.is_checkpoint(step):
            for t, (name, value) in enumerate(layout.golden_state(model)):
                obs.add(f"/checkpoints/{step:08d}/model/{name}", (), value, (5, t), f"checkpoint {step:08d} {name}", "state", name.split(".")[0])
            for t, (name, p) in enumerate(zip(names, parameters)):
                buffer = optimizer.state[p]["momentum_buffer"].detach().cpu().double().numpy()
                obs.add(f"/checkpoints/{step:08d}/optimizer/momentum_buffer/{name}", (), buffer, (6, t),
                        f"checkpoint {step:08d} momentum buffer {name}", "state", name.split(".")[0])
        if step == plan.end_of_epoch(epoch) and "/epochs/train_loss" in record:
            validation_loss, validation_accuracy, _ = evaluate_set("validation")
            for k, (series, value) in enumerate((("train_loss", loss_sum / samples), ("train_accuracy", 100 * correct / samples),
                                                 ("val_loss", validation_loss), ("val_accuracy", validation_accuracy))):
                obs.add(f"/epochs/{series}", (epoch,), [value], (7, k), f"epoch {epoch}: {series}", "epoch", series.split("_")[0])
            loss_sum, correct, samples = 0.0, 0, 0
    if end == window.end == plan.total_steps and "/evaluation/after/loss" in record:
        evaluation("after", plan.total_steps)
    probes.remove()
    return out
