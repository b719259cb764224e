-- Performance of each component over trailing windows ending on as_of_date: one row per
-- component (from the components seed) and window in var performance_windows.
-- Risk metrics follow empyrical (metrics.md) on the daily returns of every calendar date of the
-- window from the component's first trade exit date on; days after its last exit are zero-return
-- days. Trade metrics use the trades that exited in the window, filtered from staging before any
-- per-window work (no rescan per window). NULL wherever undefined.
-- The daily series is int_strategy_days_filled: fct_strategy_daily's equity and returns over the
-- recent days only (it covers the longest window), so an hourly build does not recompute the
-- whole history's equity curve to read its last weeks.
with

days as (

    select * from {{ ref('int_strategy_days_filled') }}

),

trades as (

    select * from {{ ref('stg_raw__trades') }}

),

components as (

    select * from {{ ref('components') }}

),

as_of as (

    select {{ tradebase.as_of_date() }} as as_of_date

),

windows as (

    {{ tradebase.performance_windows() }}

),

component_windows as (

    select
        components.component_id,
        windows.window_days,
        as_of.as_of_date,
        cast(
            coalesce(components.periods_per_year, {{ var('default_periods_per_year', 252) }})
            as double precision
        ) as periods_per_year,
        {{ tradebase.add_days('as_of.as_of_date', '1 - windows.window_days') }} as window_start_date

    from components
    cross join windows
    cross join as_of

),

-- The series holds every date from the component's first exit date (or its own start, before
-- the longest window) to as_of_date; after the last exit a day returns 0.
window_days_filled as (

    select
        days.component_id,
        component_windows.window_days,
        days.date_day,
        days.date_day = component_windows.as_of_date as is_last_day,
        days.equity_start,
        days.equity_end,
        days.daily_return

    from days
    inner join component_windows
        on days.component_id = component_windows.component_id
    where
        days.date_day >= component_windows.window_start_date
        and days.date_day <= component_windows.as_of_date

),

-- Wealth W_t = prod(1 + r) = equity_end_t / equity_start of the window's first day, exactly;
-- W_0 = 1 counts as a peak, so a first-day loss is a drawdown (empyrical.max_drawdown).
peaks as (

    select
        *,
        first_value(equity_start) over (
            partition by component_id, window_days order by date_day
        ) as window_start_equity,
        max(equity_end) over (
            partition by component_id, window_days order by date_day
            rows between unbounded preceding and current row
        ) as running_max_equity

    from window_days_filled

),

drawdowns as (

    select
        *,
        equity_end / nullif(
            case
                when running_max_equity > window_start_equity then running_max_equity
                else window_start_equity
            end,
            0
        ) - 1 as drawdown

    from peaks

),

window_aggregates as (

    select
        component_id,
        window_days,
        count(*) as n_days,
        count(daily_return) as n_returns,
        avg(daily_return) as mean_return,
        stddev_samp(daily_return) as stddev_return,
        max(daily_return) as max_return,
        min(daily_return) as min_return,
        avg(
            case when daily_return < 0 then daily_return * daily_return else 0.0 end
        ) as downside_mean_square,
        min(drawdown) as max_drawdown,
        max(case when is_last_day then equity_end end)
        / nullif(max(window_start_equity), 0) as growth

    from drawdowns
    group by component_id, window_days

),

-- Trade metrics: the trades that exited in the largest window, read once and rolled up per
-- day before the per-window sums (no rescan per window).
recent_trades as (

    select
        trades.component_id,
        trades.exit_date,
        trades.entry_price,
        trades.quantity,
        {{ tradebase.trade_net_pnl(
            'trades.side', 'trades.entry_price', 'trades.exit_price', 'trades.quantity', 'trades.fees'
        ) }} as net_pnl

    from trades
    cross join as_of
    -- On the timestamp, not its date: a plain comparison the scan can push down and prune.
    where
        trades.exited_at < cast({{ tradebase.add_days('as_of.as_of_date', 1) }} as timestamp)
        and trades.exited_at >= cast({{
            tradebase.add_days('as_of.as_of_date', 1 - tradebase.max_performance_window() | int)
        }} as timestamp)

),

recent_trade_returns as (

    select
        component_id,
        exit_date,
        net_pnl,
        {{ tradebase.trade_return('net_pnl', 'entry_price', 'quantity') }} as trade_return

    from recent_trades

),

recent_trades_by_day as (

    select
        component_id,
        exit_date,
        count(*) as n_trades,
        sum(case when net_pnl > 0 then 1 else 0 end) as n_wins,
        sum(case when net_pnl < 0 then 1 else 0 end) as n_losses,
        sum(net_pnl) as pnl,
        sum(trade_return) as sum_trade_return,
        sum(case when net_pnl > 0 then trade_return else 0 end) as sum_win_return,
        sum(case when net_pnl < 0 then trade_return else 0 end) as sum_loss_return

    from recent_trade_returns
    group by component_id, exit_date

),

trade_aggregates as (

    select
        recent_trades_by_day.component_id,
        windows.window_days,
        sum(recent_trades_by_day.n_trades) as n_trades,
        sum(recent_trades_by_day.n_wins) as n_wins,
        sum(recent_trades_by_day.n_losses) as n_losses,
        sum(recent_trades_by_day.pnl) as pnl,
        sum(recent_trades_by_day.sum_trade_return) as sum_trade_return,
        sum(recent_trades_by_day.sum_win_return) as sum_win_return,
        sum(recent_trades_by_day.sum_loss_return) as sum_loss_return

    from recent_trades_by_day
    cross join windows
    cross join as_of
    where
        recent_trades_by_day.exit_date
        > {{ tradebase.add_days('as_of.as_of_date', '-windows.window_days') }}
    group by recent_trades_by_day.component_id, windows.window_days

),

joined as (

    select
        component_windows.component_id,
        component_windows.as_of_date,
        component_windows.window_days,
        component_windows.window_start_date,
        component_windows.periods_per_year,
        coalesce(window_aggregates.n_days, 0) as n_days,
        coalesce(trade_aggregates.n_trades, 0) as n_trades,
        coalesce(trade_aggregates.n_wins, 0) as n_wins,
        coalesce(trade_aggregates.n_losses, 0) as n_losses,
        coalesce(
            trade_aggregates.n_trades - trade_aggregates.n_wins - trade_aggregates.n_losses, 0
        ) as n_break_even,
        coalesce(trade_aggregates.pnl, 0) as pnl,
        trade_aggregates.sum_trade_return,
        trade_aggregates.sum_win_return,
        trade_aggregates.sum_loss_return,
        window_aggregates.n_returns,
        window_aggregates.mean_return,
        window_aggregates.stddev_return,
        window_aggregates.max_return,
        window_aggregates.min_return,
        window_aggregates.downside_mean_square,
        window_aggregates.max_drawdown,
        window_aggregates.growth

    from component_windows
    left join window_aggregates
        on
            component_windows.component_id = window_aggregates.component_id
            and component_windows.window_days = window_aggregates.window_days
    left join trade_aggregates
        on
            component_windows.component_id = trade_aggregates.component_id
            and component_windows.window_days = trade_aggregates.window_days

),

metrics as (

    select
        component_id,
        as_of_date,
        window_days,
        window_start_date,
        periods_per_year,
        n_days,
        n_trades,
        n_wins,
        n_losses,
        n_break_even,
        pnl,
        cast(n_wins as double precision)
        / nullif(n_wins + n_losses, 0) as win_rate,
        sum_trade_return / nullif(n_trades, 0) as avg_trade_return,
        sum_win_return / nullif(-sum_loss_return, 0) as profit_factor,
        n_losses = 0 as has_no_losses,
        -- p * avg_win - (1 - p) * |avg_loss| reduces to the mean return of the trades that won
        -- or lost: break-even trades are left out, unlike avg_trade_return.
        (sum_win_return + sum_loss_return) / nullif(n_wins + n_losses, 0) as expectancy,
        -- empyrical.sharpe_ratio: ddof=1; a constant series has zero dispersion.
        case
            when n_returns >= 2 and n_returns = n_days and max_return > min_return
                then mean_return / stddev_return * sqrt(periods_per_year)
        end as sharpe,
        -- empyrical.sortino_ratio: downside deviation over all n returns, NaN below 2 returns.
        case
            when n_returns >= 2 and n_returns = n_days and downside_mean_square > 0
                then
                    mean_return * periods_per_year
                    / (sqrt(downside_mean_square) * sqrt(periods_per_year))
        end as sortino,
        max_drawdown,
        -- empyrical.annual_return: prod(1 + r) ** (A / n) - 1; NULL when prod <= 0 or overflow.
        case
            when growth > 0 and n_returns = n_days
                then
                    case
                        when ln(growth) * periods_per_year / n_days < 700
                            then power(growth, 1.0 / (n_days / periods_per_year)) - 1
                    end
        end as annual_return

    from joined

),

final as (

    select
        cast(component_id as text) as component_id,
        cast(as_of_date as date) as as_of_date,
        cast(window_days as integer) as window_days,
        cast(window_start_date as date) as window_start_date,
        cast(periods_per_year as double precision) as periods_per_year,
        cast(n_trades as bigint) as n_trades,
        cast(n_wins as bigint) as n_wins,
        cast(n_losses as bigint) as n_losses,
        cast(n_break_even as bigint) as n_break_even,
        cast(n_days as bigint) as n_days,
        cast(pnl as double precision) as pnl,
        cast(win_rate as double precision) as win_rate,
        cast(avg_trade_return as double precision) as avg_trade_return,
        cast(profit_factor as double precision) as profit_factor,
        cast(has_no_losses as boolean) as has_no_losses,
        cast(expectancy as double precision) as expectancy,
        cast(sharpe as double precision) as sharpe,
        cast(sortino as double precision) as sortino,
        cast(max_drawdown as double precision) as max_drawdown,
        cast(annual_return as double precision) as annual_return,
        cast(
            case when max_drawdown < 0 then annual_return / abs(max_drawdown) end
            as double precision
        ) as calmar

    from metrics

)

select * from final
