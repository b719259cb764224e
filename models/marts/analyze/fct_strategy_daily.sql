-- One row per component and calendar date from its first to its last trade exit date, zero
-- where nothing closed. Trades are booked on their exit date. Equity compounds from the
-- component's initial capital: equity_end = initial_capital + cumulative pnl, equity_start =
-- initial_capital + cumulative pnl before the day (the previous day's equity_end: the same
-- running sum, so the two agree exactly), daily_return = pnl / equity_start (metrics.md).
-- A view: a trade that arrives late for an old date moves the equity of every later day, so a
-- table would be rewritten whole at every hourly build. Nothing in the project reads it (the
-- marts read the recent days from int_strategy_days_filled); a BI tool reading it computes it
-- from the incremental daily roll-up, and a filter on component_id reaches that roll-up.
-- Its relations are named without the DuckDB catalog (the file's name): a copy of the file, or
-- the file attached under another name (a BI tool, a backup), reads the view as well.
{{ config(materialized='view') }}

with

trades_by_day as (

    select * from {{ ref('int_trades_aggregated_to_daily').include(database=false) }}

),

components as (

    select * from {{ ref('components').include(database=false) }}

),

bounds as (

    select
        trades_by_day.component_id,
        components.initial_capital,
        min(trades_by_day.exit_date) as first_date,
        max(trades_by_day.exit_date) as last_date

    from trades_by_day
    inner join components
        on trades_by_day.component_id = components.component_id
    group by trades_by_day.component_id, components.initial_capital

),

spine as (

    select
        component_id,
        initial_capital,
        {{ tradebase.date_series('first_date', 'last_date') }} as date_day

    from bounds

),

filled as (

    select
        spine.component_id,
        spine.date_day,
        spine.initial_capital,
        coalesce(trades_by_day.n_trades, 0) as n_trades,
        coalesce(trades_by_day.pnl, 0) as pnl

    from spine
    left join trades_by_day
        on
            spine.component_id = trades_by_day.component_id
            and spine.date_day = trades_by_day.exit_date

),

equity as (

    select
        component_id,
        date_day,
        n_trades,
        pnl,
        initial_capital + coalesce(sum(pnl) over (
            partition by component_id order by date_day
            rows between unbounded preceding and 1 preceding
        ), 0) as equity_start,
        initial_capital + sum(pnl) over (
            partition by component_id order by date_day
            rows between unbounded preceding and current row
        ) as equity_end,
        date_day = max(date_day) over (partition by component_id) as is_last_day

    from filled

),

final as (

    select
        cast(component_id as text) as component_id,
        cast(date_day as date) as date_day,
        cast(n_trades as bigint) as n_trades,
        cast(pnl as double precision) as pnl,
        cast(equity_start as double precision) as equity_start,
        cast(equity_end as double precision) as equity_end,
        cast(pnl / nullif(equity_start, 0) as double precision) as daily_return,
        cast(is_last_day as boolean) as is_last_day

    from equity

)

select * from final
