"""The learning-rate schedule and adaptive gradient clipping of the published recipe."""
import math
from typing import Iterable, Optional

import torch


def learning_rate(step: int, base_lr: float, warmup_steps: int, total_steps: int, restart_step: Optional[int] = None,
                  schedule: str = "cosine") -> float:
    """Linear warm-up lr * (step + 1) / warmup for step < warmup, then cosine annealing over
    total - warmup steps, advanced once per step (so 4e-4 at 5000, 2e-4 at 102,500 and 0 at
    200,000 for the published 4e-4 / 5000 / 200,000). After a `train.reset_lr` resume at
    `restart_step` the cosine restarts there over the remaining steps, without warm-up.
    schedule "constant" (MMagic's DIM): lr after the warm-up, whatever the step."""
    if schedule == "constant":
        return base_lr * (step + 1) / warmup_steps if step < warmup_steps else base_lr
    if restart_step is not None:
        span = max(total_steps - restart_step - 1, 1)
        return base_lr * (1 + math.cos(math.pi * min(step - restart_step, span) / span)) / 2
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    return base_lr * (1 + math.cos(math.pi * min(step - warmup_steps + 1, span) / span)) / 2


class AdaptiveGradClip:
    """The first step clips at 1e6 and its norm seeds a moving maximum; later steps clip at twice
    the moving maximum, which then moves as 0.999 m + 0.001 * (norm before clipping)."""

    FIRST_LIMIT = 1e6
    MOMENT = 0.999

    def __init__(self, enabled: bool = True, moving_max: Optional[float] = None):
        self.enabled = enabled
        self.moving_max = moving_max

    def limit(self) -> float:
        if not self.enabled:
            return math.inf
        return self.FIRST_LIMIT if self.moving_max is None else 2 * self.moving_max

    def clip(self, parameters: Iterable[torch.Tensor]) -> float:
        """Clips in place and returns the norm before clipping (not finite: nothing is changed
        in the moving maximum and the caller should skip the step)."""
        norm = float(torch.nn.utils.clip_grad_norm_(parameters, self.limit()))
        if self.enabled and math.isfinite(norm):
            self.moving_max = norm if self.moving_max is None else self.MOMENT * self.moving_max + (1 - self.MOMENT) * norm
        return norm
