-- One row per symbol and UTC calendar date: intraday bars rolled up to a daily OHLCV bar
-- (daily input passes through unchanged). Regimes are defined on daily bars (metrics.md).
-- Incremental per symbol (macros/incremental_bars.sql): a symbol's days from the day before the
-- first one whose bars changed (count or newest loaded_at) on; nothing when no bar arrived.
{{ config(
    materialized='incremental',
    unique_key=['symbol', 'bar_date'],
    incremental_strategy='symbol_range',
    on_schema_change='append_new_columns',
    pre_hook="{{ tradebase.delete_vanished_symbols(ref('stg_raw__bars')) }}",
    indexes=[{'columns': ['symbol', 'bar_date'], 'unique': true}] if target.type == 'postgres' else [],
) }}
{%- set written = tradebase.bars_before(
    tradebase.bars_changed(ref('stg_raw__bars'), grain='day'), 1, ref('stg_raw__bars'), 'bar_date'
) %}

with

bars as (

    select * from {{ ref('stg_raw__bars') }}
    where {{ tradebase.bars_from(written, 'bar_date', 'date') }}

),

ordered as (

    select
        symbol,
        bar_date,
        bar_at,
        open_price,
        high_price,
        low_price,
        close_price,
        volume,
        loaded_at,
        row_number() over (
            partition by symbol, bar_date order by bar_at
        ) as n_from_open,
        row_number() over (
            partition by symbol, bar_date order by bar_at desc
        ) as n_from_close

    from bars

),

daily as (

    select
        symbol,
        bar_date,
        max(case when n_from_open = 1 then open_price end) as open_price,
        max(high_price) as high_price,
        min(low_price) as low_price,
        max(case when n_from_close = 1 then close_price end) as close_price,
        sum(volume) as volume,
        count(*) as n_bars,
        min(bar_at) as first_bar_at,
        max(bar_at) as last_bar_at,
        max(loaded_at) as loaded_at

    from ordered
    group by symbol, bar_date

)

select * from daily
