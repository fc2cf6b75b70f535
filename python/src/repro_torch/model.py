"""The notebook's LeNet-5 with its own BatchNorm (restated operation for operation), and loading a user's model."""
from __future__ import annotations

import importlib.util
import os
from typing import Optional

import torch
import torch.nn.functional as F


class NotebookBatchNorm(torch.nn.Module):
    """The notebook's BatchNorm2d; with `flat`, its BatchNorm1d (the same operations on (N, C)).

    Training: the batch's per-channel mean and standard deviation (unbiased: ÷ (m − 1)) normalize, and the
    running buffers become momentum·running + (1 − momentum)·batch (the notebook's weighting: momentum keeps
    the old value). Evaluation: the running buffers normalize. No ε by default (the notebook has none).
    `batch_statistics` keeps the last training pass's (mean, std) for the golden's comparison.
    """

    def __init__(self, features: int, flat: bool = False, momentum: float = 0.9, epsilon: float = 0.0, unbiased: bool = True):
        super().__init__()
        self.flat, self.momentum, self.epsilon, self.unbiased = flat, momentum, epsilon, unbiased
        self.gamma = torch.nn.Parameter(torch.ones(features, 1))
        self.beta = torch.nn.Parameter(torch.zeros(features, 1))
        self.register_buffer("running_mean", torch.zeros(features, 1))
        self.register_buffer("running_std", torch.ones(features, 1))
        self.batch_statistics: Optional[tuple] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flat:
            x = x.transpose(0, 1).contiguous().view(x.shape[1], -1)
        else:
            x = x.transpose(0, 1)
            c, bs, h, w = x.shape
            x = x.contiguous().view(c, -1)
        if self.training:
            mean = x.mean(dim=1).view(-1, 1)
            if self.epsilon == 0:
                std = x.std(dim=1, unbiased=self.unbiased).view(-1, 1)
            else:
                std = (x.var(dim=1, unbiased=self.unbiased) + self.epsilon).sqrt().view(-1, 1)
            self.batch_statistics = (mean.detach(), std.detach())
            with torch.no_grad():
                self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mean
                self.running_std = self.momentum * self.running_std + (1 - self.momentum) * std
        else:
            mean, std = self.running_mean, self.running_std
        x = (x - mean) / std
        x = x * self.gamma + self.beta
        return x.transpose(0, 1) if self.flat else x.view(c, bs, h, w).transpose(0, 1)


class LeNet(torch.nn.Module):
    """The notebook's LeNet(norm): the same modules, registered in the same order (so its state_dict names)."""

    def __init__(self, norm: bool = True, bn_momentum: float = 0.9, bn_epsilon: float = 0.0, bn_unbiased: bool = True):
        super().__init__()
        self.norm = norm
        bn = lambda n, flat=False: NotebookBatchNorm(n, flat, bn_momentum, bn_epsilon, bn_unbiased)  # noqa: E731
        self.conv1 = torch.nn.Conv2d(3, 6, (5, 5))
        if norm:
            self.bn1 = bn(6)
        self.conv2 = torch.nn.Conv2d(6, 16, (5, 5))
        if norm:
            self.bn2 = bn(16)
        self.fc3 = torch.nn.Linear(400, 120)
        if norm:
            self.bn3 = bn(120, True)
        self.fc4 = torch.nn.Linear(120, 84)
        if norm:
            self.bn4 = bn(84, True)
        self.fc5 = torch.nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.norm:
            x = self.bn1(x)
        x = F.max_pool2d(F.relu(x), kernel_size=2)
        x = self.conv2(x)
        if self.norm:
            x = self.bn2(x)
        x = F.max_pool2d(F.relu(x), kernel_size=2)
        x = x.view(x.shape[0], -1)
        x = self.fc3(x)
        if self.norm:
            x = self.bn3(x)
        x = self.fc4(F.relu(x))
        if self.norm:
            x = self.bn4(x)
        return self.fc5(F.relu(x))


class ModelError(Exception):
    """A model that cannot be used; str() is the one-line message (exit code 2)."""


def load_model_class(spec: str):
    """FILE.py:CLASS → the class, or ModelError naming what is wrong."""
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise ModelError(f"{spec}: expected FILE.py:CLASS")
    if not os.path.isfile(path):
        raise ModelError(f"{path}: no such file")
    module_spec = importlib.util.spec_from_file_location("repro_torch_user_model", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's file: any error it raises is its problem, reported in one line
        raise ModelError(f"{path}: does not import: {type(e).__name__}: {e}".splitlines()[0]) from None
    cls = getattr(module, name, None)
    if cls is None:
        raise ModelError(f"{path}: has no {name}")
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ModelError(f"{path}: {name} is not a torch.nn.Module class")
    return cls
