"""A one-line progress display on stderr for loops over a model's matrices."""

from __future__ import annotations

import sys
import time


class ProgressLine:
    """Rewrites one stderr line per step (``\\r``) and ends it on :meth:`close`; silent when
    ``show`` is False.

    Args:
        label: the loop's name, printed first.
        show: print at all (None: when there are more than ``min_steps`` steps and stderr is a
            terminal).
        steps: the number of steps, for ``show=None``.
    """

    def __init__(self, label: str, show: bool | None, steps: int, *, min_steps: int = 8):
        self.label = label
        self.show = show if show is not None else (steps > min_steps and sys.stderr.isatty())
        self.start = time.perf_counter()

    def update(self, text: str) -> None:
        if self.show:
            print(f"\r{self.label}: {text}, {time.perf_counter() - self.start:.1f} s", end="", file=sys.stderr)

    def close(self) -> None:
        if self.show:
            print(file=sys.stderr)
