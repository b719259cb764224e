-- One row per bar: the forward label over h = var feature_label_horizon_bars bars and the time
-- it resolves, t1 = bar_at of bar t+h (AFML ch. 7). The one model that may look ahead: its
-- columns are the label, never a feature (docs/features.md). NULL while bar t+h is not loaded.
-- Incremental per symbol (macros/incremental_bars.sql): a symbol's rows from h bars before its
-- first changed bar on (their labels look h bars ahead); nothing when no bar arrived.
{{ config(
    materialized='incremental',
    unique_key=['symbol', 'bar_at'],
    incremental_strategy='symbol_range',
    on_schema_change='append_new_columns',
    pre_hook="{{ tradebase.delete_vanished_symbols(ref('int_bar_returns')) }}",
    indexes=[{'columns': ['symbol', 'bar_at'], 'unique': true}] if target.type == 'postgres' else [],
) }}
{%- set recomputed = tradebase.bars_before(
    tradebase.bars_changed(ref('int_bar_returns')),
    tradebase.feature_label_horizon_bars(),
    ref('int_bar_returns'),
) %}

with

bar_returns as (

    select * from {{ ref('int_bar_returns') }}
    where {{ tradebase.bars_from(recomputed) }}

),

ahead as (

    select
        symbol,
        bar_at,
        close_price,
        lead(close_price, {{ tradebase.feature_label_horizon_bars() }}) {{ tradebase.bars_window() }}
            as horizon_close_price,
        lead(bar_at, {{ tradebase.feature_label_horizon_bars() }}) {{ tradebase.bars_window() }}
            as label_resolved_at,
        loaded_at

    from bar_returns

),

forward_returns as (

    select
        symbol,
        bar_at,
        horizon_close_price / close_price - 1 as forward_return,
        label_resolved_at,
        loaded_at

    from ahead

),

final as (

    select
        symbol,
        bar_at,
        cast({{ tradebase.feature_label_horizon_bars() }} as integer) as label_horizon_bars,
        forward_return,
        -- label is the contract's name (the trainer reads it), a keyword only to sqlfluff.
        cast(
            case
                when forward_return > 0 then 1
                when forward_return <= 0 then 0
            end as integer
        ) as label,  -- noqa: RF04
        label_resolved_at,
        loaded_at

    from forward_returns

)

select * from final
