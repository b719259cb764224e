-- Trend summary per component, metric and rolling window over the last var identify_trend_days
-- days to as_of_date (the series is fct_rolling_metrics_daily). Slope: ordinary least squares of
-- the rolling metric on the day number, over the days with enough evidence; its t-statistic is
-- slope / se, se = sqrt((Syy - slope * Sxy) / (n - 2) / Sxx) (any regression text; scipy.stats
-- linregress agrees). is_declining: the metric gets worse (slope < 0 for higher-is-better,
-- > 0 for max_drawdown) with |t| >= var identify_trend_min_abs_t on at least
-- var identify_trend_min_points points. The change in daily returns between the last
-- var identify_recent_days days and the rest of the trend window is a Welch t (scipy.stats
-- ttest_ind(equal_var=False)).
{%- set trend_days = tradebase.identify_days('identify_trend_days', 30) %}
{%- set recent_days = tradebase.identify_days('identify_recent_days', 7) %}
{%- set min_points = tradebase.identify_days('identify_trend_min_points', 10) %}
{%- set min_abs_t = var('identify_trend_min_abs_t', 2.0) | float %}
with

series as (

    select * from {{ ref('fct_rolling_metrics_daily') }}

),

days as (

    select * from {{ ref('int_strategy_days_filled') }}

),

as_of as (

    select
        {{ tradebase.as_of_date() }} as as_of_date,
        {{ tradebase.add_days(tradebase.as_of_date(), 1 - trend_days) }} as trend_start_date,
        {{ tradebase.add_days(tradebase.as_of_date(), 1 - recent_days) }} as recent_start_date

),

trend_points as (

    select
        series.component_id,
        series.metric,
        series.window_days,
        series.direction,
        series.date_day,
        series.value,
        series.status,
        cast({{ tradebase.days_between('as_of.trend_start_date', 'series.date_day') }} as double precision)
            as day_number

    from series
    cross join as_of
    where series.date_day >= as_of.trend_start_date

),

regressions as (

    select
        component_id,
        metric,
        window_days,
        max(direction) as direction,
        max(case when status <> 'insufficient_data' then date_day end) as last_scored_date,
        regr_count(value, day_number) as n_points,
        regr_slope(value, day_number) as slope,
        regr_sxx(value, day_number) as sxx,
        regr_syy(value, day_number) as syy,
        regr_sxy(value, day_number) as sxy,
        avg(value) as mean_value

    from trend_points
    -- A day whose window lacks evidence is no point of the trend (statistics.md §4).
    where status <> 'insufficient_data'
    group by component_id, metric, window_days

),

series_keys as (

    select distinct
        component_id,
        metric,
        window_days,
        direction

    from trend_points

),

slope_tests as (

    select
        series_keys.component_id,
        series_keys.metric,
        series_keys.window_days,
        series_keys.direction,
        coalesce(regressions.n_points, 0) as n_points,
        regressions.slope,
        regressions.mean_value,
        case
            when
                regressions.n_points > 2 and regressions.sxx > 0
                and regressions.syy - regressions.slope * regressions.sxy > 0
                then
                    regressions.slope / sqrt(
                        (regressions.syy - regressions.slope * regressions.sxy)
                        / (regressions.n_points - 2) / regressions.sxx
                    )
        end as slope_t_stat

    from series_keys
    left join regressions
        on
            series_keys.component_id = regressions.component_id
            and series_keys.metric = regressions.metric
            and series_keys.window_days = regressions.window_days

),

return_halves as (

    select
        days.component_id,
        count(case when days.date_day >= as_of.recent_start_date then days.daily_return end) as n_recent,
        count(case when days.date_day < as_of.recent_start_date then days.daily_return end) as n_prior,
        avg(case when days.date_day >= as_of.recent_start_date then days.daily_return end) as recent_mean,
        avg(case when days.date_day < as_of.recent_start_date then days.daily_return end) as prior_mean,
        var_samp(case when days.date_day >= as_of.recent_start_date then days.daily_return end)
            as recent_var,
        var_samp(case when days.date_day < as_of.recent_start_date then days.daily_return end)
            as prior_var

    from days
    cross join as_of
    where
        days.date_day >= as_of.trend_start_date
        and days.date_day <= as_of.as_of_date
    group by days.component_id

),

welch as (

    select
        component_id,
        n_recent,
        n_prior,
        recent_mean,
        prior_mean,
        recent_var / n_recent + prior_var / n_prior as se_squared,
        case
            when n_recent >= 2 and n_prior >= 2 and recent_var / n_recent + prior_var / n_prior > 0
                then
                    (recent_mean - prior_mean) / sqrt(recent_var / n_recent + prior_var / n_prior)
        end as welch_t,
        -- Welch-Satterthwaite degrees of freedom.
        case
            when n_recent >= 2 and n_prior >= 2 and recent_var / n_recent + prior_var / n_prior > 0
                then
                    power(recent_var / n_recent + prior_var / n_prior, 2) / (
                        power(recent_var / n_recent, 2) / (n_recent - 1)
                        + power(prior_var / n_prior, 2) / (n_prior - 1)
                    )
        end as welch_df

    from return_halves

),

final as (

    select
        cast(slope_tests.component_id as text) as component_id,
        cast(slope_tests.metric as text) as metric,
        cast(slope_tests.window_days as integer) as window_days,
        cast(as_of.as_of_date as date) as as_of_date,
        cast(as_of.trend_start_date as date) as trend_start_date,
        cast(slope_tests.direction as text) as direction,
        cast(slope_tests.n_points as bigint) as n_points,
        cast(slope_tests.mean_value as double precision) as mean_value,
        cast(slope_tests.slope as double precision) as slope,
        cast(slope_tests.slope_t_stat as double precision) as slope_t_stat,
        cast(
            coalesce(
                slope_tests.n_points >= {{ min_points }}
                and (
                    (
                        slope_tests.direction = 'higher_is_better'
                        and slope_tests.slope < 0 and slope_tests.slope_t_stat <= -{{ min_abs_t }}
                    )
                    or (
                        slope_tests.direction = 'lower_is_better'
                        and slope_tests.slope > 0 and slope_tests.slope_t_stat >= {{ min_abs_t }}
                    )
                ),
                false
            ) as boolean
        ) as is_declining,
        cast(welch.n_recent as bigint) as n_recent_days,
        cast(welch.n_prior as bigint) as n_prior_days,
        cast(welch.recent_mean as double precision) as recent_mean_return,
        cast(welch.prior_mean as double precision) as prior_mean_return,
        cast(welch.recent_mean - welch.prior_mean as double precision) as return_change,
        cast(welch.welch_t as double precision) as welch_t,
        cast(welch.welch_df as double precision) as welch_df

    from slope_tests
    cross join as_of
    left join welch
        on slope_tests.component_id = welch.component_id

)

select * from final
