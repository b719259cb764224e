-- The point-in-time feature mart the retraining reads (docs/features.md): one row per symbol
-- and bar, every f_ column computed from bars with bar_at <= this bar_at only, the regime of
-- the previous daily bar, and the forward label with the time t1 it resolves (AFML ch. 7).
-- Features are double precision, NULL while their history is short (never NaN, never 0-filled).
-- Incremental per symbol (macros/incremental_bars.sql): a symbol's rows from h bars before its
-- first changed bar on (the labels of those look ahead into it; the regimes of later dates
-- follow from its daily bar); nothing when no bar arrived.
{{ config(
    materialized='incremental',
    unique_key=['symbol', 'bar_at'],
    incremental_strategy='symbol_range',
    on_schema_change='append_new_columns',
    pre_hook="{{ tradebase.delete_vanished_symbols(ref('int_bar_rolling_features')) }}",
    indexes=[{'columns': ['symbol', 'bar_at'], 'unique': true}] if target.type == 'postgres' else [],
) }}
{%- set recomputed = tradebase.bars_before(
    tradebase.bars_changed(ref('int_bar_rolling_features')),
    tradebase.feature_label_horizon_bars(),
    ref('int_bar_rolling_features'),
) %}

with

rolling_features as (

    select * from {{ ref('int_bar_rolling_features') }}
    where {{ tradebase.bars_from(recomputed) }}

),

regimes as (

    select * from {{ ref('int_market_regimes_lagged') }}

),

labels as (

    select * from {{ ref('int_bar_labels') }}
    where {{ tradebase.bars_from(recomputed) }}

),

final as (

    select
        rolling_features.symbol,
        rolling_features.bar_at,
        rolling_features.bar_date,
        cast(rolling_features.close_price as double precision) as close_price,
        cast(rolling_features.f_ret_1 as double precision) as f_ret_1,
        cast(rolling_features.f_ret_5 as double precision) as f_ret_5,
        cast(rolling_features.f_ret_10 as double precision) as f_ret_10,
        cast(rolling_features.f_ret_20 as double precision) as f_ret_20,
        cast(rolling_features.f_vol_10 as double precision) as f_vol_10,
        cast(rolling_features.f_vol_20 as double precision) as f_vol_20,
        cast(rolling_features.f_dist_sma_10 as double precision) as f_dist_sma_10,
        cast(rolling_features.f_dist_sma_50 as double precision) as f_dist_sma_50,
        cast(rolling_features.f_dist_sma_200 as double precision) as f_dist_sma_200,
        cast(rolling_features.f_rsi_14 as double precision) as f_rsi_14,
        cast(rolling_features.f_volume_z_20 as double precision) as f_volume_z_20,
        cast(rolling_features.f_range_1 as double precision) as f_range_1,
        cast(
            case regimes.trend when 'up' then 1 when 'down' then 0 end as double precision
        ) as f_regime_trend_up,
        cast(
            case
                when regimes.volatility = 'high' then 1
                when regimes.volatility in ('mid', 'low') then 0
            end as double precision
        ) as f_regime_vol_high,
        cast(
            case
                when regimes.volatility = 'low' then 1
                when regimes.volatility in ('mid', 'high') then 0
            end as double precision
        ) as f_regime_vol_low,
        cast(extract(hour from rolling_features.bar_at) as double precision) as f_hour,
        cast(extract(isodow from rolling_features.bar_at) as double precision) as f_dow,
        labels.label_horizon_bars,
        cast(labels.forward_return as double precision) as forward_return,
        labels.label,
        labels.label_resolved_at,
        cast(rolling_features.loaded_at as timestamp) as loaded_at

    from rolling_features
    inner join labels
        on
            rolling_features.symbol = labels.symbol
            and rolling_features.bar_at = labels.bar_at
    left join regimes
        on
            rolling_features.symbol = regimes.symbol
            and rolling_features.bar_date = regimes.bar_date

)

select * from final
