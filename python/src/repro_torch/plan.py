"""The run's plan as repro derives it from the configuration (RunPlan in Sources/ReproTraining/RunConfig.swift)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from .philox import train_count


@dataclass(frozen=True)
class Window:
    index: int
    start: int  # the checkpoint it starts from
    end: int  # the last step it runs

    def __str__(self) -> str:
        return f"window {self.index} (after step {self.end})" if self.start == self.end else f"window {self.index} (steps {self.start + 1}–{self.end})"


class Plan:
    def __init__(self, train_samples: int, batch_size: int, epochs: int, max_steps: Optional[int],
                 checkpoint_every: Optional[int], window_steps: Optional[int]) -> None:
        self.train_count = train_count(train_samples)
        self.steps_per_epoch = self.train_count // batch_size
        full = self.steps_per_epoch * epochs
        self.total_steps = min(full, max_steps) if max_steps else full
        self.checkpoint_every = checkpoint_every or max(self.steps_per_epoch, 1)
        self.window_steps = window_steps

    def end_of_epoch(self, epoch: int) -> int:
        """The last step of `epoch` (an epoch cut short by max_steps ends at the last step)."""
        return min((epoch + 1) * self.steps_per_epoch, self.total_steps)

    @property
    def checkpoint_steps(self) -> List[int]:
        steps = list(range(0, self.total_steps + 1, self.checkpoint_every))
        return steps if self.total_steps % self.checkpoint_every == 0 else steps + [self.total_steps]

    @property
    def windows(self) -> List[Window]:
        steps, out = self.checkpoint_steps, []
        for i, start in enumerate(steps[:-1]):
            end = min(start + self.window_steps, steps[i + 1]) if self.window_steps else steps[i + 1]
            out.append(Window(len(out), start, end))
        if not out or out[-1].end != self.total_steps:
            out.append(Window(len(out), self.total_steps, self.total_steps))
        return out
