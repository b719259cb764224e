-- Closed trades per component, exit date and regime at entry ('unknown' when none), over the
-- recent data range (macros/identify.sql recent_data_start_date, to as_of_date). Wins and losses
-- for the rolling win rate, trade counts for the regime an underperforming period fell in, P&L
-- for the recent equity series.
-- Reads the enriched-trades view (not fct_trades, a mart) with the exit filter pushed into it.
with

trades as (

    select * from {{ ref('int_trades_enriched_with_regime') }}

),

as_of as (

    select {{ tradebase.as_of_date() }} as as_of_date

),

recent_trades as (

    select
        trades.component_id,
        trades.exit_date,
        coalesce(trades.regime_at_entry, 'unknown') as regime,
        trades.net_pnl

    from trades
    cross join as_of
    -- On the timestamp, not its date: a plain comparison the scan can push down and prune.
    where
        trades.exited_at < cast({{ tradebase.add_days('as_of.as_of_date', 1) }} as timestamp)
        and trades.exited_at
        >= cast({{ tradebase.recent_data_start_date('as_of.as_of_date') }} as timestamp)

),

daily as (

    select
        component_id,
        exit_date,
        regime,
        count(*) as n_trades,
        sum(case when net_pnl > 0 then 1 else 0 end) as n_wins,
        sum(case when net_pnl < 0 then 1 else 0 end) as n_losses,
        sum(net_pnl) as pnl

    from recent_trades
    group by component_id, exit_date, regime

)

select * from daily
