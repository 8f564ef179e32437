"""When an MPN edit's training loop stops: the edit holds and the memory has settled, or the edit has stalled."""

from __future__ import annotations

from .config import MPNEditorConfig


class StopRule:
    """Tracks one edit's training loop and says when to run the full check and when to give up early.

    Two clocks run. The memory clock (T-Patcher's rule): once every memory is below ``-memory_margin``, or the
    memory loss has not improved by 1% for ``patience`` steps, the memory has settled and an edit that holds may
    stop. The progress clock: every ``monitor_every`` steps the caller measures the edit on all its trained
    versions (how many hold, and the mean edit loss); when neither more versions hold nor the loss is 1% lower
    than the best so far for ``stall_steps`` steps, the edit has stalled (a shared patch that cannot write a
    language's answer, say) and further steps would only spend time.
    """

    monitor_every = 5

    def __init__(self, config: MPNEditorConfig, has_memory: bool) -> None:
        self.config = config
        self.has_memory = has_memory
        self.best_memory, self.since_best_memory = float("inf"), 0
        self.best_fixed, self.best_loss, self.last_progress = -1, float("inf"), 0

    def memory_settled(self, memory_loss: float, memory_peak: float) -> bool:
        """Record one step's memory loss and peak pre-activation; whether the memory has settled."""
        if memory_loss < self.best_memory * 0.99:
            self.best_memory, self.since_best_memory = memory_loss, 0
        else:
            self.since_best_memory += 1
        silent = memory_peak < -self.config.memory_margin
        return not self.has_memory or silent or self.since_best_memory >= self.config.patience

    def monitors(self, step: int) -> bool:
        """Whether the caller measures progress at ``step`` (then it calls `record_progress`)."""
        return self.config.stall_steps > 0 and step % self.monitor_every == 0

    def record_progress(self, step: int, fixed: int, loss: float) -> None:
        """``fixed``: trained versions that hold; ``loss``: the mean edit loss over all of them."""
        if fixed > self.best_fixed or loss < self.best_loss * 0.99:
            self.last_progress = step
        self.best_fixed, self.best_loss = max(self.best_fixed, fixed), min(self.best_loss, loss)

    def stalled(self, step: int) -> bool:
        """Whether no progress was recorded in the last ``stall_steps`` steps."""
        return self.config.stall_steps > 0 and step - self.last_progress >= self.config.stall_steps
