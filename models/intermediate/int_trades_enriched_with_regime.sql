-- Each trade with the market regime of the last daily bar of its symbol strictly before the
-- trade's entry date (no look-ahead), plus net P&L, return and holding time.
-- The as-of lookup is two equi-joins, so a big trades table never meets a range join and no
-- trade is read but those selected downstream: each bar's regime is spread over the calendar
-- dates it is "the last bar before" (bar_date, next bar_date]; a trade entered after its
-- symbol's last bar takes that bar's regime (a join on the symbol alone).
{{ config(materialized='view') }}

with

trades as (

    select * from {{ ref('stg_raw__trades') }}

),

regimes as (

    select * from {{ ref('int_market_regimes') }}

),

bar_spans as (

    select
        symbol,
        bar_date,
        regime,
        lead(bar_date) over (partition by symbol order by bar_date) as next_bar_date

    from regimes

),

-- Bars followed by another bar: a bounded span of dates.
regime_spans as (

    select
        symbol,
        bar_date,
        regime,
        next_bar_date as span_end_date

    from bar_spans
    where
        regime is not null
        and next_bar_date is not null

),

-- The last bar of each symbol, if it has a regime: every later entry date. From a second
-- import: a CTE read twice is materialized whole (DuckDB), and the trades filter of a model
-- reading this view would not reach the trades scan through it.
latest_regimes as (

    select * from {{ ref('int_market_regimes') }}

),

ranked_bars as (

    select
        symbol,
        bar_date,
        regime,
        row_number() over (partition by symbol order by bar_date desc) as bar_rank

    from latest_regimes

),

last_regimes as (

    select
        symbol,
        bar_date,
        regime

    from ranked_bars
    where
        bar_rank = 1
        and regime is not null

),

regime_calendar as (

    select
        symbol,
        regime,
        bar_date as regime_bar_date,
        {{ tradebase.date_series(tradebase.add_days('bar_date', 1), 'span_end_date') }} as entry_date

    from regime_spans

),

enriched as (

    select
        trades.trade_id,
        trades.component_id,
        trades.symbol,
        trades.side,
        trades.quantity,
        trades.entered_at,
        trades.exited_at,
        trades.entry_date,
        trades.exit_date,
        trades.entry_price,
        trades.exit_price,
        trades.fees,
        trades.strategy_version,
        trades.variant,
        trades.model_version,
        trades.ingest_id,
        trades.source_row,
        trades.loaded_at,
        coalesce(regime_calendar.regime, last_regimes.regime) as regime_at_entry,
        coalesce(regime_calendar.regime_bar_date, last_regimes.bar_date) as regime_bar_date,
        {{ tradebase.trade_net_pnl(
            'trades.side', 'trades.entry_price', 'trades.exit_price', 'trades.quantity', 'trades.fees'
        ) }} as net_pnl,
        {{ tradebase.seconds_between('trades.entered_at', 'trades.exited_at') }} as holding_seconds

    from trades
    left join regime_calendar
        on
            trades.symbol = regime_calendar.symbol
            and trades.entry_date = regime_calendar.entry_date
    left join last_regimes
        on
            trades.symbol = last_regimes.symbol
            and trades.entry_date > last_regimes.bar_date

),

final as (

    select
        *,
        {{ tradebase.trade_return('net_pnl', 'entry_price', 'quantity') }} as trade_return,
        case
            when net_pnl > 0 then 'win'
            when net_pnl < 0 then 'loss'
            when net_pnl = 0 then 'break_even'
        end as outcome

    from enriched

)

select * from final
