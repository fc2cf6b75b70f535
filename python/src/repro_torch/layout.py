"""The golden's state_dict names against a model's: each golden tensor's place in the model.

A model fits when every tensor of the golden's checkpoint has a place of the same size in the model's
state_dict, and the model has nothing else. The notebook's own BatchNorm keeps `gamma`, `beta`,
`running_mean`, `running_std` as [C, 1]; a `torch.nn.BatchNorm1d`/`BatchNorm2d` put in its place keeps
`weight`, `bias`, `running_mean`, `running_var` as [C] (and `num_batches_tracked`). Such a module is
translated, not refused: γ and β and the running mean are reshaped, the running std is √running_var
(so a port that swapped in PyTorch's BatchNorm is judged by what it computes, not rejected by its names).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
import torch

from .record import RecordError

# The notebook BatchNorm's tensor → the torch.nn.BatchNorm tensor in the same place.
TORCH_BATCH_NORM_NAMES = {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_std": "running_var"}


def is_torch_batch_norm(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.modules.batchnorm._BatchNorm)


@dataclass(frozen=True)
class Place:
    golden: str  # the golden's name
    own: str  # the model's state_dict name
    kind: str  # "same"; "flat": [C, 1] ↔ [C]; "variance": a std [C, 1] ↔ a variance [C]


class Layout:
    """Where each of the golden's tensors lives in `model`; RecordError listing what does not fit."""

    def __init__(self, model: torch.nn.Module, golden: Dict[str, np.ndarray], path: str) -> None:
        modules = dict(model.named_modules())
        own = model.state_dict()
        self.places: List[Place] = []
        for name in golden:
            prefix, _, leaf = name.rpartition(".")
            module = modules.get(prefix)
            if module is not None and is_torch_batch_norm(module) and leaf in TORCH_BATCH_NORM_NAMES:
                kind = "variance" if leaf == "running_std" else "flat"
                self.places.append(Place(name, f"{prefix}.{TORCH_BATCH_NORM_NAMES[leaf]}", kind))
            else:
                self.places.append(Place(name, name, "same"))
        missing = [p.golden if p.own == p.golden else f"{p.golden} (as {p.own})" for p in self.places if p.own not in own]
        mapped = {p.own for p in self.places}
        extra = [n for n in own if n not in mapped and not self._ignored(n, modules)]
        shapes = []
        for p in self.places:
            if p.own in own and own[p.own].numel() != golden[p.golden].size:
                shapes.append(f"{p.own} {tuple(own[p.own].shape)} vs {p.golden} {tuple(golden[p.golden].shape)}")
            elif p.own in own and p.kind == "same" and tuple(own[p.own].shape) != tuple(golden[p.golden].shape):
                shapes.append(f"{p.own} {tuple(own[p.own].shape)} vs {tuple(golden[p.golden].shape)}")
        if missing or extra or shapes:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"not in the golden {', '.join(extra)}"] if extra else []) \
                + ([f"shapes {'; '.join(shapes)}"] if shapes else [])
            raise RecordError(f"{path}: the model does not fit the golden's state_dict: {'; '.join(parts)}")
        self._by_own = {p.own: p for p in self.places}

    @staticmethod
    def _ignored(name: str, modules: Dict[str, torch.nn.Module]) -> bool:
        """A torch.nn.BatchNorm's step counter: it has no place in the notebook (only momentum=None reads it)."""
        prefix, _, leaf = name.rpartition(".")
        return leaf == "num_batches_tracked" and is_torch_batch_norm(modules.get(prefix, torch.nn.Module()))

    def load(self, model: torch.nn.Module, golden: Dict[str, np.ndarray]) -> None:
        """The golden's tensors into the model (strict: every tensor of the model is set or kept on purpose)."""
        state = dict(model.state_dict())
        for p in self.places:
            value = golden[p.golden].astype(np.float32)
            if p.kind == "variance":
                value = np.square(value.astype(np.float64)).astype(np.float32)
            state[p.own] = torch.from_numpy(np.ascontiguousarray(value.reshape(tuple(state[p.own].shape))))
        model.load_state_dict(state)

    def golden_state(self, model: torch.nn.Module) -> List[Tuple[str, np.ndarray]]:
        """The model's state under the golden's names and in its order, float64 (a variance back to a std)."""
        own = model.state_dict()
        out = []
        for p in self.places:
            value = own[p.own].detach().cpu().double().numpy().reshape(-1)
            out.append((p.golden, np.sqrt(value) if p.kind == "variance" else value))
        return out

    def parameter_names(self, model: torch.nn.Module) -> List[str]:
        """The golden's name of each of model.parameters(), in that order."""
        names = []
        for own, _ in model.named_parameters():
            if own not in self._by_own:
                raise RecordError(f"the model's parameter {own} has no place in the golden")
            names.append(self._by_own[own].golden)
        return names

    def parameter_shaped(self, parameter: torch.Tensor, values: np.ndarray) -> torch.Tensor:
        """A golden tensor (a momentum buffer) in the shape of the model's parameter."""
        return torch.from_numpy(np.ascontiguousarray(values.astype(np.float32).reshape(tuple(parameter.shape))))
