-- One row per bar: the returns and price changes every rolling feature builds on, each from
-- this bar and earlier bars of the symbol only (lag(), never lead(); docs/features.md).
-- Simple returns close_t / close_{t-k} - 1; the one-bar log return ln(close_t / close_{t-1});
-- the one-bar gain and loss of Cutler's RSI. NULL while the history is too short.
-- Incremental per symbol (macros/incremental_bars.sql): a symbol's rows from the bar before its
-- first changed bar on, reading the 20 bars before that the longest lag needs; nothing when no
-- bar arrived.
{{ config(
    materialized='incremental',
    unique_key=['symbol', 'bar_at'],
    incremental_strategy='symbol_range',
    on_schema_change='append_new_columns',
    pre_hook="{{ tradebase.delete_vanished_symbols(ref('stg_raw__bars')) }}",
    indexes=[{'columns': ['symbol', 'bar_at'], 'unique': true}] if target.type == 'postgres' else [],
) }}
{%- set changed = tradebase.bars_changed(ref('stg_raw__bars')) %}
{%- set written = tradebase.bars_before(changed, 1, ref('stg_raw__bars')) %}

with

bars as (

    select * from {{ ref('stg_raw__bars') }}
    where {{ tradebase.bars_from(tradebase.bars_before(changed, 21, ref('stg_raw__bars'))) }}

),

changes as (

    select
        symbol,
        bar_at,
        bar_date,
        open_price,
        high_price,
        low_price,
        close_price,
        volume,
        {{ tradebase.simple_return('close_price', 1) }} as f_ret_1,
        {{ tradebase.simple_return('close_price', 5) }} as f_ret_5,
        {{ tradebase.simple_return('close_price', 10) }} as f_ret_10,
        {{ tradebase.simple_return('close_price', 20) }} as f_ret_20,
        ln(close_price / lag(close_price) {{ tradebase.bars_window() }}) as log_return_1,
        close_price - lag(close_price) {{ tradebase.bars_window() }} as price_change_1,
        loaded_at

    from bars

),

final as (

    select
        symbol,
        bar_at,
        bar_date,
        open_price,
        high_price,
        low_price,
        close_price,
        volume,
        f_ret_1,
        f_ret_5,
        f_ret_10,
        f_ret_20,
        log_return_1,
        case when price_change_1 > 0 then price_change_1 when price_change_1 <= 0 then 0.0 end as gain_1,
        case when price_change_1 < 0 then -price_change_1 when price_change_1 >= 0 then 0.0 end as loss_1,
        loaded_at

    from changes
    where {{ tradebase.bars_from(written) }}

)

select * from final
