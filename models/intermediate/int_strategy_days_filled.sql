-- One row per component and calendar date of the recent data range (macros/identify.sql
-- recent_data_start_date: what the IDENTIFY series' rolling windows and mart_performance's
-- longest window read, to as_of_date), from the component's first exit date on: P&L, equity and
-- daily return as fct_strategy_daily defines them (equity compounds from initial_capital; trades
-- are booked on their exit date), zero-return days after the last exit (as mart_performance),
-- and the day's wins and losses. Equity is rebuilt from the per-day P&L (the P&L before the range
-- summed once), so only the range's days are read. The performance windows, rolling metrics,
-- trends and periods all read this one series.
with

trades_by_day as (

    select * from {{ ref('int_trades_aggregated_to_daily') }}

),

-- Imported twice on purpose: a CTE read twice is materialized whole, while each of these is
-- read once (the bounds over every day, the outcomes over the range's days).
recent_trades_by_day as (

    select * from {{ ref('int_trades_aggregated_to_daily') }}

),

components as (

    select * from {{ ref('components') }}

),

as_of as (

    select
        {{ tradebase.as_of_date() }} as as_of_date,
        {{ tradebase.recent_data_start_date(tradebase.as_of_date()) }} as data_start_date

),

component_bounds as (

    select
        trades_by_day.component_id,
        min(trades_by_day.exit_date) as first_date,
        max(trades_by_day.exit_date) as last_date,
        sum(case when trades_by_day.exit_date < as_of.data_start_date then trades_by_day.pnl else 0 end)
            as pnl_before_range

    from trades_by_day
    cross join as_of
    group by trades_by_day.component_id

),

series_bounds as (

    select
        component_bounds.component_id,
        components.initial_capital + component_bounds.pnl_before_range as equity_at_range_start,
        component_bounds.last_date,
        as_of.as_of_date,
        cast(
            coalesce(components.periods_per_year, {{ var('default_periods_per_year', 252) }})
            as double precision
        ) as periods_per_year,
        case
            when component_bounds.first_date > as_of.data_start_date then component_bounds.first_date
            else as_of.data_start_date
        end as series_start_date

    from component_bounds
    inner join components
        on component_bounds.component_id = components.component_id
    cross join as_of
    where component_bounds.first_date <= as_of.as_of_date

),

spine as (

    select
        component_id,
        equity_at_range_start,
        last_date,
        periods_per_year,
        {{ tradebase.date_series('series_start_date', 'as_of_date') }} as date_day

    from series_bounds

),

outcomes_by_day as (

    select
        recent_trades_by_day.component_id,
        recent_trades_by_day.exit_date,
        recent_trades_by_day.n_trades,
        recent_trades_by_day.n_wins,
        recent_trades_by_day.n_losses,
        recent_trades_by_day.pnl

    from recent_trades_by_day
    cross join as_of
    where
        recent_trades_by_day.exit_date >= as_of.data_start_date
        and recent_trades_by_day.exit_date <= as_of.as_of_date

),

filled as (

    select
        spine.component_id,
        spine.date_day,
        spine.periods_per_year,
        spine.equity_at_range_start,
        spine.date_day > spine.last_date as is_after_last_exit,
        coalesce(outcomes_by_day.n_trades, 0) as n_trades,
        coalesce(outcomes_by_day.n_wins, 0) as n_wins,
        coalesce(outcomes_by_day.n_losses, 0) as n_losses,
        coalesce(outcomes_by_day.pnl, 0) as pnl

    from spine
    left join outcomes_by_day
        on
            spine.component_id = outcomes_by_day.component_id
            and spine.date_day = outcomes_by_day.exit_date

),

equity as (

    select
        component_id,
        date_day,
        periods_per_year,
        is_after_last_exit,
        n_trades,
        n_wins,
        n_losses,
        pnl,
        equity_at_range_start + coalesce(sum(pnl) over (
            partition by component_id order by date_day
            rows between unbounded preceding and 1 preceding
        ), 0) as equity_start,
        equity_at_range_start + sum(pnl) over (
            partition by component_id order by date_day
            rows between unbounded preceding and current row
        ) as equity_end

    from filled

),

final as (

    select
        component_id,
        date_day,
        periods_per_year,
        n_trades,
        n_wins,
        n_losses,
        pnl,
        equity_start,
        equity_end,
        -- After the last exit a day returns 0 (metrics.md), even where the equity it rests at
        -- is 0.
        case
            when is_after_last_exit then 0.0
            else pnl / nullif(equity_start, 0)
        end as daily_return

    from equity

)

select * from final
