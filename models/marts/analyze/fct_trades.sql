-- One row per closed trade: its raw attributes, net P&L and return (metrics.md "Trade
-- metrics"), holding time and the market regime at entry (NULL when unknown).
-- Incremental: a build rewrites only the trades loaded or corrected since the last one and those
-- whose regime a newly loaded bar may change (macros/incremental.sql), replacing them by trade_id.
-- On PostgreSQL the unique index on trade_id makes the delete of the replaced rows a lookup, and
-- the one on loaded_at the hourly build's reads of the new rows (watermark, scoped tests).
-- depends_on: {{ ref('stg_raw__bars') }}
-- Built after int_trades_aggregated_to_daily, which reads the days of the changed trades from
-- this table before it is rewritten (macros/incremental_trade_days.sql).
-- depends_on: {{ ref('int_trades_aggregated_to_daily') }}
{{ config(
    materialized='incremental',
    unique_key='trade_id',
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns',
    indexes=[
        {'columns': ['trade_id'], 'unique': true},
        {'columns': ['loaded_at']},
    ] if target.type == 'postgres' else [],
) }}

with

trades as (

    select * from {{ ref('int_trades_enriched_with_regime') }}

),

final as (

    select
        cast(trade_id as text) as trade_id,
        cast(component_id as text) as component_id,
        cast(symbol as text) as symbol,
        cast(side as text) as side,
        cast(quantity as double precision) as quantity,
        cast(entered_at as timestamp) as entered_at,
        cast(exited_at as timestamp) as exited_at,
        cast(entry_date as date) as entry_date,
        cast(exit_date as date) as exit_date,
        cast(entry_price as double precision) as entry_price,
        cast(exit_price as double precision) as exit_price,
        cast(fees as double precision) as fees,
        cast(net_pnl as double precision) as net_pnl,
        cast(trade_return as double precision) as trade_return,
        cast(outcome as text) as outcome,
        cast(holding_seconds as double precision) as holding_seconds,
        cast(regime_at_entry as text) as regime_at_entry,
        cast(regime_bar_date as date) as regime_bar_date,
        cast(strategy_version as text) as strategy_version,
        cast(variant as text) as variant,
        cast(model_version as text) as model_version,
        cast(ingest_id as text) as ingest_id,
        cast(source_row as bigint) as source_row,
        cast(loaded_at as timestamp) as loaded_at

    from trades
    where {{ tradebase.trades_to_recompute('loaded_at', 'entry_date') }}

)

select * from final
