-- Each trade with the market regime of the last daily bar of its symbol strictly before the
-- trade's entry date (no look-ahead), plus net P&L, return and holding time.
-- The as-of lookup is an equi-join on (symbol, entry_date): each bar's regime is spread over
-- the calendar dates it is "the last bar before" (bar_date, next bar_date], up to the symbol's
-- last entry date, so a big trades table never meets a range join.
{{ config(materialized='view') }}

with

trades as (

    select * from {{ ref('stg_raw__trades') }}

),

-- A second import of the trades for the calendar's end dates: a CTE read twice would be
-- materialized whole by DuckDB, this one reads two columns.
trade_entries as (

    select * from {{ ref('stg_raw__trades') }}

),

regimes as (

    select * from {{ ref('int_market_regimes') }}

),

last_entries as (

    select
        symbol,
        max(entry_date) as last_entry_date

    from trade_entries
    group by symbol

),

bar_spans as (

    select
        symbol,
        bar_date,
        regime,
        lead(bar_date) over (partition by symbol order by bar_date) as next_bar_date

    from regimes

),

regime_spans as (

    select
        bar_spans.symbol,
        bar_spans.bar_date,
        bar_spans.regime,
        case
            when
                bar_spans.next_bar_date is null
                or bar_spans.next_bar_date > last_entries.last_entry_date
                then last_entries.last_entry_date
            else bar_spans.next_bar_date
        end as span_end_date

    from bar_spans
    inner join last_entries
        on bar_spans.symbol = last_entries.symbol
    where
        bar_spans.regime is not null
        and bar_spans.bar_date < last_entries.last_entry_date

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
        regime_calendar.regime as regime_at_entry,
        regime_calendar.regime_bar_date,
        {{ tradebase.trade_net_pnl(
            'trades.side', 'trades.entry_price', 'trades.exit_price', 'trades.quantity', 'trades.fees'
        ) }} as net_pnl,
        {{ tradebase.seconds_between('trades.entered_at', 'trades.exited_at') }} as holding_seconds

    from trades
    left join regime_calendar
        on
            trades.symbol = regime_calendar.symbol
            and trades.entry_date = regime_calendar.entry_date

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
