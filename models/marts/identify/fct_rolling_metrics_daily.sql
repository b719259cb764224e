-- The daily series behind the trends and the underperforming periods: for each component, date of
-- the last var identify_lookback_days days (to as_of_date) and rolling window of var
-- identify_rolling_windows, the window's win rate, Sharpe, max drawdown magnitude and (through
-- seeds/component_models.csv) its model's accuracy, each with its evidence and threshold status.
-- Same definitions as mart_performance / mart_model_accuracy (metrics.md) on the window ending
-- on each date. A window is built by an equi-join of each day onto the window ends it belongs to
-- (date_series), so a window's drawdown can be computed from its own running peak.
with

days as (

    select * from {{ ref('int_strategy_days_filled') }}

),

predictions_by_day as (

    select * from {{ ref('int_predictions_aggregated_to_daily') }}

),

component_models as (

    select * from {{ ref('component_models') }}

),

thresholds as (

    select * from {{ ref('int_alert_thresholds_resolved') }}

),

as_of as (

    select
        {{ tradebase.as_of_date() }} as as_of_date,
        {{ tradebase.identify_series_start_date(tradebase.as_of_date()) }} as series_start_date

),

windows as (

    {{ tradebase.rolling_windows() }}

),

day_window_ends as (

    select
        days.component_id,
        days.date_day,
        days.periods_per_year,
        days.n_trades,
        days.n_wins,
        days.n_losses,
        days.equity_start,
        days.equity_end,
        days.daily_return,
        windows.window_days,
        {{ tradebase.date_series(
            'days.date_day', tradebase.add_days('days.date_day', 'windows.window_days - 1')
        ) }} as end_date

    from days
    cross join windows

),

in_series as (

    select day_window_ends.*
    from day_window_ends
    cross join as_of
    where
        day_window_ends.end_date >= as_of.series_start_date
        and day_window_ends.end_date <= as_of.as_of_date

),

-- Wealth relative to the window's first day: W_t = equity_end_t / equity_start of that day, with
-- W_0 = 1 a peak (empyrical.max_drawdown, as mart_performance). The peak at t is the highest
-- equity from the window's start to t: since a day's equity_start is the previous day's
-- equity_end, it is the running max of greatest(equity_start, equity_end) over the window's
-- days, one window function.
window_peaks as (

    select
        *,
        max(
            case when equity_start > equity_end then equity_start else equity_end end
        ) over (
            partition by component_id, window_days, end_date order by date_day
            rows between unbounded preceding and current row
        ) as running_peak_equity

    from in_series

),

window_drawdowns as (

    select
        *,
        equity_end / nullif(running_peak_equity, 0) - 1 as drawdown

    from window_peaks

),

trade_windows as (

    select
        component_id,
        window_days,
        end_date,
        max(periods_per_year) as periods_per_year,
        count(*) as n_days,
        count(daily_return) as n_returns,
        sum(n_trades) as n_trades,
        sum(n_wins) as n_wins,
        sum(n_losses) as n_losses,
        avg(daily_return) as mean_return,
        stddev_samp(daily_return) as stddev_return,
        max(daily_return) as max_return,
        min(daily_return) as min_return,
        min(drawdown) as max_drawdown

    from window_drawdowns
    group by component_id, window_days, end_date

),

component_predictions as (

    select
        component_models.component_id,
        predictions_by_day.prediction_date,
        sum(predictions_by_day.n_labelled) as n_labelled,
        sum(predictions_by_day.n_correct) as n_correct

    from predictions_by_day
    inner join component_models
        on predictions_by_day.model_id = component_models.model_id
    group by component_models.component_id, predictions_by_day.prediction_date

),

prediction_window_ends as (

    select
        component_predictions.component_id,
        component_predictions.n_labelled,
        component_predictions.n_correct,
        windows.window_days,
        {{ tradebase.date_series(
            'component_predictions.prediction_date',
            tradebase.add_days('component_predictions.prediction_date', 'windows.window_days - 1')
        ) }} as end_date

    from component_predictions
    cross join windows

),

prediction_windows as (

    select
        prediction_window_ends.component_id,
        prediction_window_ends.window_days,
        prediction_window_ends.end_date,
        sum(prediction_window_ends.n_labelled) as n_labelled,
        sum(prediction_window_ends.n_correct) as n_correct

    from prediction_window_ends
    cross join as_of
    where
        prediction_window_ends.end_date >= as_of.series_start_date
        and prediction_window_ends.end_date <= as_of.as_of_date
    group by
        prediction_window_ends.component_id,
        prediction_window_ends.window_days,
        prediction_window_ends.end_date

),

metric_values as (

    select
        component_id,
        window_days,
        end_date,
        'win_rate' as metric,
        cast(n_wins as double precision) / nullif(n_wins + n_losses, 0) as metric_value,
        n_trades as evidence_count

    from trade_windows

    union all

    select
        component_id,
        window_days,
        end_date,
        'sharpe' as metric,
        -- empyrical.sharpe_ratio: ddof=1; a constant series has zero dispersion.
        case
            when n_returns >= 2 and n_returns = n_days and max_return > min_return
                then mean_return / stddev_return * sqrt(periods_per_year)
        end as metric_value,
        n_days as evidence_count

    from trade_windows

    union all

    select
        component_id,
        window_days,
        end_date,
        'max_drawdown' as metric,
        0 - max_drawdown as metric_value,
        n_days as evidence_count

    from trade_windows

    union all

    select
        component_id,
        window_days,
        end_date,
        'model_accuracy' as metric,
        cast(n_correct as double precision) / nullif(n_labelled, 0) as metric_value,
        n_labelled as evidence_count

    from prediction_windows

),

scored as (

    select
        metric_values.component_id,
        metric_values.end_date as date_day,
        metric_values.window_days,
        metric_values.metric,
        thresholds.direction,
        metric_values.metric_value,
        metric_values.evidence_count,
        thresholds.min_evidence,
        thresholds.target_value,
        thresholds.warning_value,
        thresholds.critical_value,
        {{ tradebase.metric_status(
            'metric_values.metric_value', 'metric_values.evidence_count', 'thresholds.min_evidence',
            'thresholds.direction', 'thresholds.target_value', 'thresholds.warning_value',
            'thresholds.critical_value'
        ) }} as status

    from metric_values
    inner join thresholds
        on
            metric_values.component_id = thresholds.component_id
            and metric_values.metric = thresholds.metric

),

final as (

    select
        cast(scored.component_id as text) as component_id,
        cast(scored.date_day as date) as date_day,
        cast(scored.window_days as integer) as window_days,
        cast(scored.metric as text) as metric,
        cast(scored.direction as text) as direction,
        cast(scored.metric_value as double precision) as value,  -- noqa: RF04
        cast(scored.evidence_count as bigint) as evidence_count,
        cast(scored.min_evidence as bigint) as min_evidence,
        cast(scored.status as text) as status,
        cast({{ tradebase.threshold_crossed_value(
            'scored.status', 'scored.target_value', 'scored.warning_value', 'scored.critical_value'
        ) }} as double precision) as threshold_value,
        cast(scored.status in ('warning', 'critical') as boolean) as is_warning_or_worse,
        cast(as_of.as_of_date as date) as as_of_date

    from scored
    cross join as_of

)

select * from final
