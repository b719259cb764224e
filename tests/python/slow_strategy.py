"""A user strategy loaded by import path (tests.python.slow_strategy:SlowSmaCross): sma_cross
that takes a while to decide, so a test can kill a worker in the middle of a trial."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from runner.strategies import Bars, Param, load_strategy


class SlowSmaCross:
    name = "slow_sma_cross"

    def __init__(self) -> None:
        self._inner = load_strategy("sma_cross")

    def parameters(self) -> Sequence[Param]:
        return self._inner.parameters()

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        return self._inner.problems(params)

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> NDArray[np.float64]:
        time.sleep(0.4)
        return self._inner.signals(bars, params)
