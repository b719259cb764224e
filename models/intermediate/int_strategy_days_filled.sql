-- One row per component and calendar date of the IDENTIFY data range, (series start - longest
-- rolling window, as_of_date], from the component's first exit date on: P&L, equity and daily
-- return as fct_strategy_daily defines them (equity compounds from initial_capital; trades are
-- booked on their exit date), zero-return days after the last exit (as mart_performance), and
-- the day's wins and losses. Equity is rebuilt from the per-day P&L (the P&L before the range
-- summed once), so only the range's days are read. The rolling metrics, trends and periods all
-- read this one series.
with

trades_by_day as (

    select * from {{ ref('int_trades_aggregated_to_daily') }}

),

trades_by_regime as (

    select * from {{ ref('int_trades_aggregated_to_daily_by_regime') }}

),

components as (

    select * from {{ ref('components') }}

),

as_of as (

    select
        {{ tradebase.as_of_date() }} as as_of_date,
        {{ tradebase.identify_data_start_date(tradebase.as_of_date()) }} as data_start_date

),

component_bounds as (

    select
        trades_by_day.component_id,
        min(trades_by_day.exit_date) as first_date,
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
        periods_per_year,
        {{ tradebase.date_series('series_start_date', 'as_of_date') }} as date_day

    from series_bounds

),

outcomes_by_day as (

    select
        component_id,
        exit_date,
        sum(n_trades) as n_trades,
        sum(n_wins) as n_wins,
        sum(n_losses) as n_losses,
        sum(pnl) as pnl

    from trades_by_regime
    group by component_id, exit_date

),

filled as (

    select
        spine.component_id,
        spine.date_day,
        spine.periods_per_year,
        spine.equity_at_range_start,
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
        pnl / nullif(equity_start, 0) as daily_return

    from equity

)

select * from final
