-- Trade performance of each component by market regime at entry over trailing windows ending
-- on as_of_date (trades that exited in the window). Trades with no known regime are counted
-- under 'unknown', never dropped. Cells with fewer than var regime_min_trades trades are
-- flagged is_insufficient_data rather than hidden (metrics.md "Market regimes").
with

trades as (

    select * from {{ ref('fct_trades') }}

),

as_of as (

    select {{ tradebase.as_of_date() }} as as_of_date

),

windows as (

    {{ tradebase.performance_windows() }}

),

recent_trades as (

    select
        trades.component_id,
        coalesce(trades.regime_at_entry, 'unknown') as regime,
        trades.exit_date,
        trades.net_pnl,
        trades.trade_return,
        as_of.as_of_date

    from trades
    cross join as_of
    -- On the timestamp, not its date: a plain comparison the scan can push down and prune.
    where
        trades.exited_at < cast({{ tradebase.add_days('as_of.as_of_date', 1) }} as timestamp)
        and trades.exited_at >= cast({{
            tradebase.add_days('as_of.as_of_date', 1 - tradebase.max_performance_window() | int)
        }} as timestamp)

),

in_windows as (

    select
        recent_trades.component_id,
        recent_trades.regime,
        recent_trades.as_of_date,
        windows.window_days,
        recent_trades.net_pnl,
        recent_trades.trade_return

    from recent_trades
    cross join windows
    where
        recent_trades.exit_date
        > {{ tradebase.add_days('recent_trades.as_of_date', '-windows.window_days') }}

),

aggregated as (

    select
        component_id,
        regime,
        as_of_date,
        window_days,
        count(*) as n_trades,
        sum(case when net_pnl > 0 then 1 else 0 end) as n_wins,
        sum(case when net_pnl < 0 then 1 else 0 end) as n_losses,
        avg(trade_return) as avg_trade_return,
        stddev_samp(trade_return) as stddev_trade_return,
        max(trade_return) as max_trade_return,
        min(trade_return) as min_trade_return

    from in_windows
    group by component_id, regime, as_of_date, window_days

),

final as (

    select
        cast(component_id as text) as component_id,
        cast(regime as text) as regime,
        cast(as_of_date as date) as as_of_date,
        cast(window_days as integer) as window_days,
        cast(n_trades as bigint) as n_trades,
        cast(n_wins as bigint) as n_wins,
        cast(n_losses as bigint) as n_losses,
        cast(
            cast(n_wins as double precision) / nullif(n_wins + n_losses, 0)
            as double precision
        ) as win_rate,
        cast(avg_trade_return as double precision) as avg_trade_return,
        -- Per-trade Sharpe: mean / stddev (ddof=1) of trade returns, not annualised.
        cast(
            case
                when n_trades >= 2 and max_trade_return > min_trade_return
                    then avg_trade_return / stddev_trade_return
            end as double precision
        ) as sharpe_per_trade,
        cast(n_trades < {{ var('regime_min_trades', 30) | int }} as boolean) as is_insufficient_data

    from aggregated

)

select * from final
