-- Closed trades rolled up per component and exit date: the number of trades, of winners and of
-- losers, their net P&L and the newest loaded_at among them. The one pass over the trades that
-- the daily equity curve and the recent daily series need, straight from staging so the
-- performance path never waits for the wide fct_trades table or the regime join. Each aggregate
-- over 10M trades costs a full build about as much as the rest of the path: these are the ones
-- a downstream model reads.
-- Incremental by (component, exit date), macros/incremental_trade_days.sql: a build recomputes,
-- from all their trades, the days of the trades loaded or corrected since the last build and the
-- days those trades were on before (a correction can move a trade to another day); a day left
-- without a trade loses its row (strategy trade_days). fct_trades builds after this model
-- (its depends_on): the trades' previous days are read from it before it is rewritten.
{{ config(
    materialized='incremental',
    unique_key=['component_id', 'exit_date'],
    incremental_strategy='trade_days',
    on_schema_change='append_new_columns',
    indexes=[
        {'columns': ['component_id', 'exit_date'], 'unique': true},
        {'columns': ['loaded_at']},
    ] if target.type == 'postgres' else [],
) }}

{%- set since = tradebase.trade_days_watermark() %}

with

trades as (

    select * from {{ ref('stg_raw__trades') }}

),

{% if since is not none %}
-- A second import: the trades loaded or corrected since the last build (PostgreSQL reads them
-- through the index on raw_trades.loaded_at).
changed_trades as (

    select * from {{ ref('stg_raw__trades') }}
    where loaded_at > {{ since.watermark }}

),

-- The days the changed trades were on at the last build: fct_trades still holds them.
previous_days as (

    select
        previous_trades.component_id,
        previous_trades.exit_date

    from {{ since.previous_trades }} as previous_trades
    where previous_trades.trade_id in (select changed_trades.trade_id from changed_trades)

),

days_to_recompute as (

    select
        component_id,
        exit_date

    from changed_trades

    union

    select
        component_id,
        exit_date

    from previous_days

),

{% endif %}
-- The trades to roll up: in an incremental build, every trade of those days (each warehouse
-- finds them its own way, macros/cross_db.sql).
trades_to_aggregate as (

    {% if since is none %}
        select * from trades
    {% else %}
        {{ tradebase.trades_of_days('trades', 'days_to_recompute') }}
    {% endif %}

),

trade_results as (

    select
        component_id,
        exit_date,
        loaded_at,
        {{ tradebase.trade_net_pnl('side', 'entry_price', 'exit_price', 'quantity', 'fees') }} as net_pnl

    from trades_to_aggregate

),

daily as (

    select
        component_id,
        exit_date,
        count(*) as n_trades,
        count(case when net_pnl > 0 then 1 end) as n_wins,
        count(case when net_pnl < 0 then 1 end) as n_losses,
        sum(net_pnl) as pnl,
        max(loaded_at) as loaded_at

    from trade_results
    group by component_id, exit_date

),

-- In an incremental build, a recomputed day with no trade left is written with n_trades = 0,
-- which the strategy reads as "delete this day". When an incremental build recomputes every day
-- (see trade_days_watermark), so is every day of the table that has no trade any more.
final as (

    {% if since is not none %}
        select
            days_to_recompute.component_id,
            days_to_recompute.exit_date,
            coalesce(daily.n_trades, 0) as n_trades,
            coalesce(daily.n_wins, 0) as n_wins,
            coalesce(daily.n_losses, 0) as n_losses,
            daily.pnl,
            daily.loaded_at

        from days_to_recompute
        left join daily
            on
                days_to_recompute.component_id = daily.component_id
                and days_to_recompute.exit_date = daily.exit_date
    {% elif is_incremental() %}
        select
            coalesce(daily.component_id, built_days.component_id) as component_id,
            coalesce(daily.exit_date, built_days.exit_date) as exit_date,
            coalesce(daily.n_trades, 0) as n_trades,
            coalesce(daily.n_wins, 0) as n_wins,
            coalesce(daily.n_losses, 0) as n_losses,
            daily.pnl,
            daily.loaded_at

        from daily
        full outer join {{ this }} as built_days
            on
                daily.component_id = built_days.component_id
                and daily.exit_date = built_days.exit_date
    {% else %}
        select * from daily
    {% endif %}

)

select * from final
