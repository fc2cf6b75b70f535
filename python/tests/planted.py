"""Planted PyTorch-side regressions: each one realistic line a port of the notebook could get wrong."""
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F

from repro_torch.data import notebook_batch
from repro_torch.model import LeNet, NotebookBatchNorm
from repro_torch.replay import notebook_evaluation_mode, notebook_sgd


class DroppedRunningStd(NotebookBatchNorm):
    """The running_std update forgotten (running_mean still updated)."""

    def forward(self, x):
        kept = self.running_std.clone()
        y = super().forward(x)
        if self.training:
            self.running_std = kept
        return y


class NewValueMomentum(NotebookBatchNorm):
    """torch.nn.BatchNorm's convention with the notebook's number: momentum weights the new value."""

    def forward(self, x):
        old_mean, old_std = self.running_mean.clone(), self.running_std.clone()
        y = super().forward(x)
        if self.training:
            mean, std = self.batch_statistics
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * old_mean + self.momentum * mean
                self.running_std = (1 - self.momentum) * old_std + self.momentum * std
        return y


class StatisticsFreeBatchNorm(NotebookBatchNorm):
    """The notebook's numbers in a module that does not keep `batch_statistics`: repro-torch computes them
    from the layer's input (the control for that path)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.__dict__.pop("batch_statistics")

    def forward(self, x):
        y = super().forward(x)
        self.__dict__.pop("batch_statistics", None)
        return y


def lenet_with(bn_class, **options):
    def make(config):
        model = LeNet(config.norm, config.bn_momentum, options.get("epsilon", config.bn_epsilon), options.get("unbiased", config.bn_unbiased))
        for name in ("bn1", "bn2", "bn3", "bn4"):
            old = getattr(model, name, None)
            if old is not None and bn_class is not NotebookBatchNorm:
                setattr(model, name, bn_class(old.gamma.shape[0], old.flat, old.momentum, old.epsilon, old.unbiased))
        return model
    return make


class NotebookNumericsInTorchBatchNorm(torch.nn.BatchNorm2d):
    """torch.nn.BatchNorm's class, names and shapes (weight, bias, running_mean, running_var: [C]) computing
    the notebook's numbers: the unbiased batch std, no ε, running buffers momentum·old + (1 − momentum)·new,
    with the running std kept as its square. The control for the torch.nn.BatchNorm regressions: the
    translation of names is not what they catch."""

    def __init__(self, features: int, momentum: float):
        super().__init__(features, eps=0.0)
        self.notebook_momentum = momentum
        self.batch_statistics = None  # what it normalizes by, as the notebook's BatchNorm keeps it

    def forward(self, x):
        c = x.shape[1]
        v = x.transpose(0, 1).reshape(c, -1)
        if self.training:
            mean, std = v.mean(dim=1), v.std(dim=1)
            self.batch_statistics = (mean.detach(), std.detach())
            with torch.no_grad():
                m = self.notebook_momentum
                self.running_mean.copy_(m * self.running_mean + (1 - m) * mean)
                self.running_var.copy_((m * self.running_var.sqrt() + (1 - m) * std) ** 2)
        else:
            mean, std = self.running_mean, self.running_var.sqrt()
        shape = (1, c) if x.dim() == 2 else (1, c, 1, 1)
        return (x - mean.view(shape)) / std.view(shape) * self.weight.view(shape) + self.bias.view(shape)


def lenet_with_torch_batch_norm(make_layer: Callable[[int, bool], torch.nn.Module]):
    """The notebook's LeNet with bn1…bn4 replaced: make_layer(channels, flat) → the module."""
    def make(config):
        model = LeNet(config.norm, config.bn_momentum, config.bn_epsilon, config.bn_unbiased)
        for name in ("bn1", "bn2", "bn3", "bn4"):
            old = getattr(model, name)
            setattr(model, name, make_layer(old.gamma.shape[0], old.flat))
        return model
    return make


def torch_batch_norm(**options):
    return lenet_with_torch_batch_norm(lambda c, flat: (torch.nn.BatchNorm1d if flat else torch.nn.BatchNorm2d)(c, **options))


def default_model(config):
    return LeNet(config.norm, config.bn_momentum, config.bn_epsilon, config.bn_unbiased)


def sgd_with(**changes):
    def make(parameters, config):
        options = dict(lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay)
        options.update({k: v(options[k]) for k, v in changes.items()})
        return torch.optim.SGD(parameters, **options)
    return make


def normalized_with(std):
    def transform(images, indices):
        x = torch.from_numpy(images[indices].astype("float32")).div(255).unsqueeze(1)
        x = F.pad(x, (2, 2, 2, 2), "constant", 0).repeat(1, 3, 1, 1)
        return x.sub(0.5).div(std)
    return transform


def padded_off_centre(images, indices):
    x = torch.from_numpy(images[indices].astype("float32")).div(255).unsqueeze(1)
    x = F.pad(x, (1, 3, 2, 2), "constant", 0).repeat(1, 3, 1, 1)
    return x.sub(0.5).div(0.5)


class Planted(NamedTuple):
    model: Callable
    optimizer: Callable
    transform: Callable
    step: int  # the step it acts at
    pass_: str  # the pass and layer it shows in (None: any layer)
    layer: Optional[str]
    evaluation_mode: Callable = notebook_evaluation_mode


def evaluation_in_training_mode(model):
    """model.eval() forgotten: the evaluation runs in training mode (batch statistics, running buffers moved)."""


REGRESSIONS = {
    # ÷ m instead of m − 1 moves a std by √(1 − 1/m): 5·10⁻⁶ for bn1 (m = 100,352), within its envelope; bn3 (m = 128) shows it.
    "biased variance (÷ m)": Planted(lenet_with(NotebookBatchNorm, unbiased=False), notebook_sgd, notebook_batch, 1, "forward", "bn3"),
    "ε = 1e-5 under the square root": Planted(lenet_with(NotebookBatchNorm, epsilon=1e-5), notebook_sgd, notebook_batch, 1, "forward", "bn1"),
    "momentum weighting the new value": Planted(lenet_with(NewValueMomentum), notebook_sgd, notebook_batch, 1, "forward", "bn1"),
    "running_std update dropped": Planted(lenet_with(DroppedRunningStd), notebook_sgd, notebook_batch, 1, "forward", "bn1"),
    # torch.nn.BatchNorm in the notebook's places. With its defaults (ε 1e-5, momentum 0.1 — the notebook's 0.9 in
    # PyTorch's convention) the ε shows in bn1's batch std at step 1 (in the evaluation before training it
    # moves bn1's output by 5·10⁻⁶, about 5 envelopes).
    "torch.nn.BatchNorm2d/1d, PyTorch's defaults": Planted(torch_batch_norm(), notebook_sgd, notebook_batch, 1, "forward", "bn1"),
    # With an ε far below round-off (PyTorch refuses 0 in training): the biased variance, and a running variance
    # averaged in place of the running std.
    "torch.nn.BatchNorm2d/1d, ε 1e-12, momentum 0.1": Planted(torch_batch_norm(eps=1e-12, momentum=0.1), notebook_sgd, notebook_batch, 1, "forward", "bn1"),
    # The notebook's number in PyTorch's convention: momentum 0.9 weights the new value.
    "torch.nn.BatchNorm2d/1d, ε 1e-12, momentum 0.9": Planted(torch_batch_norm(eps=1e-12, momentum=0.9), notebook_sgd, notebook_batch, 1, "forward", "bn1"),
    "learning rate × 1.001": Planted(default_model, sgd_with(lr=lambda v: v * 1.001), notebook_batch, 1, "update", None),
    "momentum 0.9 → 0.91": Planted(default_model, sgd_with(momentum=lambda v: 0.91), notebook_batch, 2, "update", None),
    "normalization std 0.5 → 0.51": Planted(default_model, notebook_sgd, normalized_with(0.51), 1, "data", "input"),
    # A shifted image has the same values, so the images' checksum (a sum of bit patterns) cannot see it, nor
    # conv1's and bn1's largest outputs (the same pixels, other borders); conv2's output shows it, already in
    # the evaluation before training (step 0).
    "padding (1, 3) instead of (2, 2)": Planted(default_model, notebook_sgd, padded_off_centre, 0, "forward", "conv2"),
    # The evaluation before training in training mode: the first test batch normalized by its own statistics.
    "model.eval() forgotten before an evaluation": Planted(default_model, notebook_sgd, notebook_batch, 0, "forward", "bn1",
                                                           evaluation_in_training_mode),
}
