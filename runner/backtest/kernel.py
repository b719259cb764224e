"""The compiled loops: the bar-by-bar fill simulation, the indicators the built-in strategies use
and the bootstrap drawdowns of risk adjustment.

The only module that imports numba; everything else imports it lazily, inside functions, so that
`runner --help` never pays for numba. It knows arrays and numbers, not Bars, strategies or errors.
The target kernels and the fill loop write their bar-length output into a buffer the caller
allocates with numpy: numpy backs large arrays with huge pages, while fresh numba allocations
fault in 4 KiB pages (measured: 5.7 ms vs 9.6 ms per evaluation on a year of minutes once another
library had fragmented the heap).
"""

from __future__ import annotations

import numpy as np
from numba import njit

EXIT_SIGNAL = 0
EXIT_STOP_LOSS = 1
EXIT_TAKE_PROFIT = 2
EXIT_END_OF_DATA = 3
EXIT_DAILY_LOSS = 4


@njit(cache=True)
def _mean_step(values, i, window, state):  # type: ignore[no-untyped-def]
    """Advance pandas' rolling-mean state to bar i and return the mean there (NaN in warm-up).

    A port of pandas/_libs/window/aggregations.pyx `roll_mean` for a fixed window (min_periods =
    window): a Kahan-compensated running sum with separate compensations for adds and removes,
    the constant-window shortcut and the sign clamps. A plain cumsum differs in the last bits,
    which flips crossovers at near-ties against backtesting.py (whose SMA is pandas').
    state = (nobs, neg_ct, sum_x, comp_add, comp_remove, prev_value, same_run).
    """
    nobs, neg_ct, sum_x, comp_add, comp_remove, prev_value, same_run = state
    if i >= window:
        val = values[i - window]
        if val == val:
            nobs -= 1
            y = -val - comp_remove
            t = sum_x + y
            comp_remove = t - sum_x - y
            sum_x = t
            if val < 0:
                neg_ct -= 1
    val = values[i]
    if val == val:
        nobs += 1
        y = val - comp_add
        t = sum_x + y
        comp_add = t - sum_x - y
        sum_x = t
        if val < 0:
            neg_ct += 1
        if val == prev_value:
            same_run += 1
        else:
            same_run = 1
        prev_value = val
    result = np.nan
    if nobs >= window:
        result = sum_x / nobs
        if same_run >= nobs:
            result = prev_value
        elif neg_ct == 0 and result < 0:
            result = 0.0
        elif neg_ct == nobs and result > 0:
            result = 0.0
    return result, (nobs, neg_ct, sum_x, comp_add, comp_remove, prev_value, same_run)


@njit(cache=True)
def _mean_start(values):  # type: ignore[no-untyped-def]
    return (0, 0, 0.0, 0.0, 0.0, values[0] if values.shape[0] > 0 else np.nan, 0)


@njit(cache=True)
def rolling_mean(values, window):  # type: ignore[no-untyped-def]
    """pandas `Series.rolling(window).mean()`, bit for bit (see _mean_step)."""
    n = values.shape[0]
    out = np.empty(n, dtype=np.float64)
    if window <= 1:  # pandas recomputes each one-value window from scratch: the value itself
        for i in range(n):
            out[i] = values[i]
        return out
    state = _mean_start(values)
    for i in range(n):
        out[i], state = _mean_step(values, i, window, state)
    return out


@njit(cache=True)
def sma_cross_targets(close, fast, slow, up, down, out):  # type: ignore[no-untyped-def]
    """crossover_targets(rolling_mean(close, fast), rolling_mean(close, slow), ...), fused.

    One pass with both running sums in flight: each Kahan update is a chain of dependent adds, so
    interleaving two of them roughly halves the time, and no intermediate arrays are made.
    """
    if fast <= 1 or slow <= 1:
        return crossover_targets(
            rolling_mean(close, fast), rolling_mean(close, slow), up, down, out
        )
    n = close.shape[0]
    fast_state = _mean_start(close)
    slow_state = _mean_start(close)
    prev_f = np.nan
    prev_s = np.nan
    for t in range(n):
        f, fast_state = _mean_step(close, t, fast, fast_state)
        s, slow_state = _mean_step(close, t, slow, slow_state)
        if prev_f < prev_s and f > s:
            out[t] = up
        elif prev_s < prev_f and s > f:
            out[t] = down
        else:
            out[t] = np.nan
        prev_f = f
        prev_s = s
    return out


@njit(cache=True)
def _rolling_extreme(values, window, is_max):  # type: ignore[no-untyped-def]
    # Monotonic deque of indices (O(n)); values are finite prices, so no NaN handling.
    n = values.shape[0]
    out = np.empty(n, dtype=np.float64)
    dq = np.empty(n, dtype=np.int64)
    head = 0
    tail = 0
    for i in range(n):
        v = values[i]
        while tail > head and (
            (is_max and values[dq[tail - 1]] <= v) or (not is_max and values[dq[tail - 1]] >= v)
        ):
            tail -= 1
        dq[tail] = i
        tail += 1
        if dq[head] <= i - window:
            head += 1
        out[i] = values[dq[head]] if i >= window - 1 else np.nan
    return out


@njit(cache=True)
def rolling_max(values, window):  # type: ignore[no-untyped-def]
    """pandas `Series.rolling(window).max()` for finite values (NaN until the window is full)."""
    return _rolling_extreme(values, window, True)


@njit(cache=True)
def rolling_min(values, window):  # type: ignore[no-untyped-def]
    """pandas `Series.rolling(window).min()` for finite values (NaN until the window is full)."""
    return _rolling_extreme(values, window, False)


@njit(cache=True)
def crossover_targets(fast, slow, up, down, out):  # type: ignore[no-untyped-def]
    """out[t] = `up` where fast crosses above slow, `down` where it crosses below, else NaN.

    Strict inequalities on both bars, as backtesting.lib.crossover: a[-2] < b[-2] and a[-1] > b[-1].
    A comparison with NaN is false, so nothing fires during warm-up.
    """
    n = fast.shape[0]
    for t in range(n):
        if t > 0 and fast[t - 1] < slow[t - 1] and fast[t] > slow[t]:
            out[t] = up
        elif t > 0 and slow[t - 1] < fast[t - 1] and slow[t] > fast[t]:
            out[t] = down
        else:
            out[t] = np.nan
    return out


@njit(cache=True)
def channel_targets(close, upper, lower, up, down, out):  # type: ignore[no-untyped-def]
    """out[t] = `up` where close[t] > upper[t-1], `down` where close[t] < lower[t-1], else NaN."""
    n = close.shape[0]
    for t in range(n):
        if t > 0 and close[t] > upper[t - 1]:
            out[t] = up
        elif t > 0 and close[t] < lower[t - 1]:
            out[t] = down
        else:
            out[t] = np.nan
    return out


@njit(cache=True)
def _trailing_vol(close, t, window):  # type: ignore[no-untyped-def]
    """std (ddof=1) of the `window` 1-bar close returns ending at bar t; NaN before enough bars.

    Two passes over the window, computed only at entries: exact and cheaper than a running
    estimate on every bar (entries are few).
    """
    if t < window:
        return np.nan
    mean = 0.0
    for i in range(t - window + 1, t + 1):
        mean += close[i] / close[i - 1] - 1.0
    mean /= window
    ss = 0.0
    for i in range(t - window + 1, t + 1):
        d = close[i] / close[i - 1] - 1.0 - mean
        ss += d * d
    return np.sqrt(ss / (window - 1))


@njit(cache=True)
def _day_end(day, i):  # type: ignore[no-untyped-def]
    """Index of the last bar of bar i's day (day holds UTC day numbers); len(day) past the end."""
    n = day.shape[0]
    if i >= n:
        return n
    j = i
    while j + 1 < n and day[j + 1] == day[i]:
        j += 1
    return j


@njit(cache=True)
def simulate_bars(  # type: ignore[no-untyped-def]
    open_,
    high,
    low,
    close,
    target,
    stop_loss,
    take_profit,
    fee,
    slip,
    active_from,
    bar_returns,
    max_size,
    vol_target,
    vol_window,
    bars_per_year,
    day,
    loss_limit,
):
    """Fill targets bar by bar; the rules are docs/backtesting.md "Fill rules" and "Sizing".

    Returns (bad_index, entry_index, exit_index, entry_price, exit_price, side, ret, reason,
    size, bar_returns), bar_returns being the `bar_returns` buffer, filled. bad_index >= 0 names
    the first target that is not +1, -1, 0 or NaN; the other arrays are then empty. Equity starts
    at 1; while a position of size s (fraction of the equity at entry) is open it is
    base * (1 + s * (side * (price / entry - 1) - fee)), base being the equity when it was
    entered, so s = 1 gives the unsized arithmetic bit for bit. The size is min(max_size,
    vol_target / annualised trailing volatility at the signal bar) and is fixed for the trade.
    loss_limit is a fraction, or None for no daily loss limit; `day` (UTC day numbers, one per
    bar) is read only with a limit.
    """
    n = close.shape[0]
    # First pass: validate, and size the trade arrays exactly (each entry needs a non-zero target
    # that can still be filled), so memory follows the number of trades, not the number of bars.
    capacity = 0
    for i in range(n):
        v = target[i]
        if v != v:
            continue
        if v != 1.0 and v != -1.0 and v != 0.0:
            empty_i = np.empty(0, dtype=np.int64)
            empty_f = np.empty(0, dtype=np.float64)
            empty_b = np.empty(0, dtype=np.int8)
            return (
                i,
                empty_i,
                empty_i,
                empty_f,
                empty_f,
                empty_b,
                empty_f,
                empty_b,
                empty_f,
                empty_f,
            )
        if v != 0.0 and active_from <= i < n - 1:
            capacity += 1
    entry_index = np.empty(capacity, dtype=np.int64)
    exit_index = np.empty(capacity, dtype=np.int64)
    entry_price = np.empty(capacity, dtype=np.float64)
    exit_price = np.empty(capacity, dtype=np.float64)
    side = np.empty(capacity, dtype=np.int8)
    ret = np.empty(capacity, dtype=np.float64)
    reason = np.empty(capacity, dtype=np.int8)
    sizes = np.empty(capacity, dtype=np.float64)

    use_sl = stop_loss > 0.0
    use_tp = take_profit > 0.0
    use_vol = vol_target > 0.0
    annualise = np.sqrt(bars_per_year)
    pos = 0.0  # -1, 0 or +1
    size = 0.0  # fraction of the equity at entry held in the open position
    exposure = 0.0
    size_fee = 0.0
    cash = 1.0  # equity while flat
    base = 0.0
    entry = 0.0
    entry_at = 0
    stop_level = 0.0
    tp_level = 0.0
    prev_equity = 1.0
    # The daily loss limit is off when loss_limit is None: numba then prunes its branches at
    # compile time (a separate specialisation). A per-bar test of a flag cost ~50% of the loop.
    day_floor = -np.inf  # equity at or below this at a close stops the day
    day_end = n  # index of the current UTC day's last bar
    if loss_limit is not None:
        day_floor = 1.0 - loss_limit
        day_end = _day_end(day, 0)
    blocked_until = -1  # targets decided on bars up to here are dropped (a stopped day)
    force_exit = False
    k = 0
    for t in range(n):
        o = open_[t]
        c = close[t]
        exit_px = 0.0
        why = -1
        if force_exit:
            # 0. The daily loss limit was reached at the previous close: this open closes the
            # position and replaces the fill of that close's target (its day is stopped).
            force_exit = False
            exit_px = o * (1.0 - pos * slip)
            why = EXIT_DAILY_LOSS
        elif t > active_from and t - 1 > blocked_until:
            # 1. The target decided on the previous close, filled at this open.
            want = target[t - 1]
            if want == want and want != pos:
                if pos != 0.0:
                    exit_px = o * (1.0 - pos * slip)
                    why = EXIT_SIGNAL
                if want != 0.0:
                    s = max_size
                    if use_vol:  # sized on closes up to the signal bar t - 1 only
                        vol = _trailing_vol(close, t - 1, vol_window) * annualise
                        if vol != vol:
                            s = 0.0  # too little history to size the position: no entry
                        elif vol > 0.0:
                            s = min(s, vol_target / vol)
                    if s > 0.0:
                        if why >= 0:  # a reversal: close first, then open at the same open
                            x = exit_px / entry
                            r = pos * (x - 1.0) - fee * (1.0 + x)
                            entry_index[k] = entry_at
                            exit_index[k] = t
                            entry_price[k] = entry
                            exit_price[k] = exit_px
                            side[k] = np.int8(pos)
                            ret[k] = r
                            reason[k] = why
                            sizes[k] = size
                            k += 1
                            cash = base * (1.0 + size * r)
                            why = -1
                        pos = want
                        size = s
                        exposure = s * pos  # s = 1: exactly pos, and s * fee exactly fee
                        size_fee = s * fee
                        base = cash
                        entry = o * (1.0 + pos * slip)
                        entry_at = t
                        stop_level = entry * (1.0 - pos * stop_loss)
                        tp_level = entry * (1.0 + pos * take_profit)
        # 2. Stop-loss, then take-profit, against this bar's range (the entry bar included).
        if why < 0 and pos != 0.0 and (use_sl or use_tp):
            if pos > 0.0:
                if use_sl and low[t] <= stop_level:
                    exit_px = min(o, stop_level)
                    why = EXIT_STOP_LOSS
                elif use_tp and high[t] >= tp_level:
                    exit_px = max(o, tp_level)
                    why = EXIT_TAKE_PROFIT
            else:
                if use_sl and high[t] >= stop_level:
                    exit_px = max(o, stop_level)
                    why = EXIT_STOP_LOSS
                elif use_tp and low[t] <= tp_level:
                    exit_px = min(o, tp_level)
                    why = EXIT_TAKE_PROFIT
            if why >= 0:
                exit_px = exit_px * (1.0 - pos * slip)
        # 3. Whatever is still open at the end closes at the last close.
        if why < 0 and pos != 0.0 and t == n - 1:
            exit_px = c * (1.0 - pos * slip)
            why = EXIT_END_OF_DATA
        if why >= 0:
            x = exit_px / entry
            r = pos * (x - 1.0) - fee * (1.0 + x)
            entry_index[k] = entry_at
            exit_index[k] = t
            entry_price[k] = entry
            exit_price[k] = exit_px
            side[k] = np.int8(pos)
            ret[k] = r
            reason[k] = why
            sizes[k] = size
            k += 1
            cash = base * (1.0 + size * r)
            pos = 0.0
        # 4. Mark to market at the close.
        if pos == 0.0:
            equity = cash
        else:
            equity = base * (1.0 + exposure * (c / entry - 1.0) - size_fee)
        bar_returns[t] = equity / prev_equity - 1.0
        prev_equity = equity
        # 5. The daily loss limit, on the equity marked at this close.
        if loss_limit is not None:
            if equity <= day_floor:
                day_floor = -np.inf  # once a day
                blocked_until = day_end
                force_exit = pos != 0.0
            if t == day_end:
                day_floor = equity * (1.0 - loss_limit)
                day_end = _day_end(day, t + 1)
    return (
        -1,
        entry_index[:k].copy(),
        exit_index[:k].copy(),
        entry_price[:k].copy(),
        exit_price[:k].copy(),
        side[:k].copy(),
        ret[:k].copy(),
        reason[:k].copy(),
        sizes[:k].copy(),
        bar_returns,
    )


@njit(cache=True)
def bootstrap_max_drawdowns(returns, paths, out):  # type: ignore[no-untyped-def]
    """out[i] = max drawdown (a positive fraction, at most 1) of the returns returns[paths[i]].

    Wealth is 1 before the first return (empyrical's convention: a first-day loss is a
    drawdown). One pass per path without materialising the resampled matrix: about 30× faster
    than numpy's gather, cumprod and running maximum on 2,000 one-year paths (1 ms vs 35 ms).
    """
    samples, length = paths.shape
    for i in range(samples):
        wealth = 1.0
        peak = 1.0
        worst = 0.0
        for h in range(length):
            wealth *= 1.0 + returns[paths[i, h]]
            if wealth > peak:
                peak = wealth
            drawdown = 1.0 - wealth / peak
            if drawdown > worst:
                worst = drawdown
        out[i] = min(worst, 1.0)
    return out
