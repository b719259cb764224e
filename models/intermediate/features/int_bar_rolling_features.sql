-- One row per bar: the trailing-window features, each over a frame that ends on this bar (or
-- the bar before it) so no later bar enters (docs/features.md). A window value is NULL until
-- its frame is full. Volatility: stddev_samp of the last k one-bar log returns. Distance to
-- the SMA: close / mean(last k closes) - 1. RSI: Cutler's SMA variant over 14 changes,
-- 100 * sum(gains) / (sum(gains) + sum(losses)), 50 when all 14 changes are zero. Volume
-- z-score: against the mean and stddev of the 20 bars before this one, NULL if they are flat.
-- Incremental per symbol (macros/incremental_bars.sql): a symbol's rows from the bar before its
-- first changed bar on, reading the 199 bars before that the longest (200-bar) frame needs.
{{ config(
    materialized='incremental',
    unique_key=['symbol', 'bar_at'],
    incremental_strategy='symbol_range',
    on_schema_change='append_new_columns',
    pre_hook="{{ tradebase.delete_vanished_symbols(ref('int_bar_returns')) }}",
    indexes=[{'columns': ['symbol', 'bar_at'], 'unique': true}] if target.type == 'postgres' else [],
) }}
{%- set changed = tradebase.bars_changed(ref('int_bar_returns')) %}
{%- set written = tradebase.bars_before(changed, 1, ref('int_bar_returns')) %}

with

bar_returns as (

    select * from {{ ref('int_bar_returns') }}
    where {{ tradebase.bars_from(tradebase.bars_before(changed, 200, ref('int_bar_returns'))) }}

),

windows as (

    select
        symbol,
        bar_at,
        bar_date,
        high_price,
        low_price,
        close_price,
        volume,
        f_ret_1,
        f_ret_5,
        f_ret_10,
        f_ret_20,
        {{ tradebase.trailing('stddev_samp', 'log_return_1', 10) }} as f_vol_10,
        {{ tradebase.trailing('stddev_samp', 'log_return_1', 20) }} as f_vol_20,
        {{ tradebase.trailing('avg', 'close_price', 10) }} as sma_10,
        {{ tradebase.trailing('avg', 'close_price', 50) }} as sma_50,
        {{ tradebase.trailing('avg', 'close_price', 200) }} as sma_200,
        {{ tradebase.trailing('sum', 'gain_1', 14) }} as gain_sum_14,
        {{ tradebase.trailing('sum', 'loss_1', 14) }} as loss_sum_14,
        {{ tradebase.trailing('avg', 'volume', 20, skip=1) }} as volume_mean_prev_20,
        {{ tradebase.trailing('stddev_samp', 'volume', 20, skip=1) }} as volume_stddev_prev_20,
        {{ tradebase.trailing('max', 'volume', 20, skip=1) }} as volume_max_prev_20,
        {{ tradebase.trailing('min', 'volume', 20, skip=1) }} as volume_min_prev_20,
        loaded_at

    from bar_returns

),

final as (

    select
        symbol,
        bar_at,
        bar_date,
        close_price,
        f_ret_1,
        f_ret_5,
        f_ret_10,
        f_ret_20,
        f_vol_10,
        f_vol_20,
        close_price / sma_10 - 1 as f_dist_sma_10,
        close_price / sma_50 - 1 as f_dist_sma_50,
        close_price / sma_200 - 1 as f_dist_sma_200,
        case
            when gain_sum_14 + loss_sum_14 > 0
                -- The ratio first: 100 * g / g can round to 100.00000000000001, g / g is exactly 1.
                then 100.0 * (gain_sum_14 / (gain_sum_14 + loss_sum_14))
            when gain_sum_14 + loss_sum_14 = 0 then 50.0
        end as f_rsi_14,
        -- Flat means max = min, tested exactly: a float stddev of equal values need not be 0.
        case
            when volume is not null and volume_max_prev_20 > volume_min_prev_20
                then (volume - volume_mean_prev_20) / volume_stddev_prev_20
        end as f_volume_z_20,
        (high_price - low_price) / close_price as f_range_1,
        loaded_at

    from windows
    where {{ tradebase.bars_from(written) }}

)

select * from final
