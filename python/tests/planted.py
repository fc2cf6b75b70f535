"""Planted PyTorch-side regressions: each one realistic line a port of the notebook could get wrong."""
import torch
import torch.nn.functional as F

from repro_torch.data import notebook_batch
from repro_torch.model import LeNet, NotebookBatchNorm
from repro_torch.replay import notebook_sgd


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


def lenet_with(bn_class, **options):
    def make(config):
        model = LeNet(config.norm, config.bn_momentum, options.get("epsilon", config.bn_epsilon), options.get("unbiased", config.bn_unbiased))
        for name in ("bn1", "bn2", "bn3", "bn4"):
            old = getattr(model, name, None)
            if old is not None and bn_class is not NotebookBatchNorm:
                setattr(model, name, bn_class(old.gamma.shape[0], old.flat, old.momentum, old.epsilon, old.unbiased))
        return model
    return make


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


# name → (model factory, optimizer factory, transform, the step it acts at, the pass and layer it shows in)
REGRESSIONS = {
    # ÷ m instead of m − 1 moves a std by √(1 − 1/m): 5·10⁻⁶ for bn1 (m = 100,352), within its envelope; bn3 (m = 128) shows it.
    "biased variance (÷ m)": (lenet_with(NotebookBatchNorm, unbiased=False), notebook_sgd, notebook_batch, 1, "forward", "bn3"),
    "ε = 1e-5 under the square root": (lenet_with(NotebookBatchNorm, epsilon=1e-5), notebook_sgd, notebook_batch, 1, "forward", "bn1"),
    "momentum weighting the new value": (lenet_with(NewValueMomentum), notebook_sgd, notebook_batch, 1, "forward", "bn1"),
    "running_std update dropped": (lenet_with(DroppedRunningStd), notebook_sgd, notebook_batch, 1, "forward", "bn1"),
    "learning rate × 1.001": (default_model, sgd_with(lr=lambda v: v * 1.001), notebook_batch, 1, "update", None),
    "momentum 0.9 → 0.91": (default_model, sgd_with(momentum=lambda v: 0.91), notebook_batch, 2, "update", None),
    "normalization std 0.5 → 0.51": (default_model, notebook_sgd, normalized_with(0.51), 1, "data", "input"),
    # A shifted image has the same values, so the images' checksum (a sum of bit patterns) cannot see it; bn1's
    # statistics barely move (the same pixels, other borders); bn2's show it at the same step.
    "padding (1, 3) instead of (2, 2)": (default_model, notebook_sgd, padded_off_centre, 1, "forward", "bn2"),
}
