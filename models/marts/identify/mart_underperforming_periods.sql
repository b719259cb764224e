-- Maximal runs of consecutive days on which a component's rolling metric (window
-- var identify_period_window_days, default 7) was at warning or worse (gaps and islands: the
-- date minus the row number is constant along a run). Only days of the series count, so a run
-- can start no earlier than the series start (starts_at_series_start). Per run: its length,
-- worst value, P&L of its days, the regime most of its trades entered in (fct_trades' regime at
-- entry, 'unknown' when none), and whether it is still open on as_of_date.
{%- set period_window = tradebase.identify_days('identify_period_window_days', 7) %}
with

series as (

    select * from {{ ref('fct_rolling_metrics_daily') }}

),

days as (

    select * from {{ ref('int_strategy_days_filled') }}

),

trades as (

    select * from {{ ref('fct_trades') }}

),

as_of as (

    select
        {{ tradebase.as_of_date() }} as as_of_date,
        {{ tradebase.identify_series_start_date(tradebase.as_of_date()) }} as series_start_date

),

-- The trades of the series' days: only those can fall in a period.
series_trades as (

    select
        trades.component_id,
        trades.exit_date,
        coalesce(trades.regime_at_entry, 'unknown') as regime

    from trades
    cross join as_of
    -- On the timestamp, not its date: a plain comparison the scan can push down and prune.
    where
        trades.exited_at < cast({{ tradebase.add_days('as_of.as_of_date', 1) }} as timestamp)
        and trades.exited_at >= cast(as_of.series_start_date as timestamp)

),

bad_days as (

    select
        component_id,
        metric,
        window_days,
        direction,
        date_day,
        value,
        status,
        row_number() over (
            partition by component_id, metric, window_days order by date_day
        ) as day_rank

    from series
    where
        window_days = {{ period_window }}
        and is_warning_or_worse

),

islands as (

    select
        bad_days.component_id,
        bad_days.metric,
        bad_days.window_days,
        bad_days.direction,
        bad_days.date_day,
        bad_days.value,
        bad_days.status,
        coalesce(days.pnl, 0) as pnl,
        {{ tradebase.add_days('bad_days.date_day', '-bad_days.day_rank') }} as island_key

    from bad_days
    left join days
        on
            bad_days.component_id = days.component_id
            and bad_days.date_day = days.date_day

),

periods as (

    select
        component_id,
        metric,
        window_days,
        island_key,
        max(direction) as direction,
        min(date_day) as start_date,
        max(date_day) as end_date,
        count(*) as n_days,
        min(value) as min_value,
        max(value) as max_value,
        sum(pnl) as pnl,
        max(case when status = 'critical' then 1 else 0 end) = 1 as has_critical

    from islands
    group by component_id, metric, window_days, island_key

),

period_regimes as (

    select
        islands.component_id,
        islands.metric,
        islands.window_days,
        islands.island_key,
        series_trades.regime,
        count(*) as n_trades

    from islands
    inner join series_trades
        on
            islands.component_id = series_trades.component_id
            and islands.date_day = series_trades.exit_date
    group by
        islands.component_id,
        islands.metric,
        islands.window_days,
        islands.island_key,
        series_trades.regime

),

ranked_regimes as (

    select
        *,
        row_number() over (
            partition by component_id, metric, window_days, island_key
            order by n_trades desc, regime asc
        ) as regime_rank,
        sum(n_trades) over (
            partition by component_id, metric, window_days, island_key
        ) as period_trades

    from period_regimes

),

final as (

    select
        cast({{ tradebase.stable_id(
            ['periods.component_id', 'periods.metric', 'periods.window_days', 'periods.start_date']
        ) }} as text) as period_id,
        cast(periods.component_id as text) as component_id,
        cast(periods.metric as text) as metric,
        cast(periods.window_days as integer) as window_days,
        cast(as_of.as_of_date as date) as as_of_date,
        cast(periods.start_date as date) as start_date,
        cast(periods.end_date as date) as end_date,
        cast(periods.n_days as integer) as n_days,
        cast(
            case when periods.direction = 'lower_is_better' then periods.max_value else periods.min_value end
            as double precision
        ) as worst_value,
        cast(periods.has_critical as boolean) as has_critical,
        cast(periods.pnl as double precision) as pnl,
        cast(coalesce(ranked_regimes.period_trades, 0) as bigint) as n_trades,
        cast(ranked_regimes.regime as text) as dominant_regime,
        cast(ranked_regimes.n_trades as bigint) as dominant_regime_trades,
        cast(periods.end_date = as_of.as_of_date as boolean) as is_open,
        cast(periods.start_date = as_of.series_start_date as boolean) as starts_at_series_start

    from periods
    cross join as_of
    left join ranked_regimes
        on
            periods.component_id = ranked_regimes.component_id
            and periods.metric = ranked_regimes.metric
            and periods.window_days = ranked_regimes.window_days
            and periods.island_key = ranked_regimes.island_key
            and ranked_regimes.regime_rank = 1

)

select * from final
