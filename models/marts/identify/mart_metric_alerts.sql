-- One row per subject (component or model version), window of var performance_windows and
-- metric: the metric's value on the window ending on as_of_date, its status against
-- seeds/alert_thresholds.csv and the threshold crossed. Components get win_rate, sharpe and
-- max_drawdown (as a positive magnitude) from mart_performance; model versions get
-- model_accuracy from mart_model_accuracy. Too little evidence is insufficient_data, never an
-- alarm (statistics.md §4).
with

performance as (

    select * from {{ ref('mart_performance') }}

),

model_accuracy as (

    select * from {{ ref('mart_model_accuracy') }}

),

component_thresholds as (

    select * from {{ ref('int_alert_thresholds_resolved') }}

),

thresholds as (

    select * from {{ ref('alert_thresholds') }}

),

component_values as (

    select
        component_id,
        as_of_date,
        window_days,
        'win_rate' as metric,
        win_rate as metric_value,
        n_trades as evidence_count,
        n_trades

    from performance

    union all

    select
        component_id,
        as_of_date,
        window_days,
        'sharpe' as metric,
        sharpe as metric_value,
        n_days as evidence_count,
        n_trades

    from performance

    union all

    select
        component_id,
        as_of_date,
        window_days,
        'max_drawdown' as metric,
        0 - max_drawdown as metric_value,
        n_days as evidence_count,
        n_trades

    from performance

),

component_subjects as (

    select
        'component' as subject_type,
        component_values.component_id as subject_id,
        component_values.component_id,
        cast(null as text) as model_id,
        cast(null as text) as model_version,
        component_values.as_of_date,
        component_values.window_days,
        component_values.metric,
        component_values.metric_value,
        component_values.evidence_count,
        component_values.n_trades,
        component_thresholds.min_trades,
        component_thresholds.direction,
        component_thresholds.target_value,
        component_thresholds.warning_value,
        component_thresholds.critical_value,
        component_thresholds.min_evidence

    from component_values
    inner join component_thresholds
        on
            component_values.component_id = component_thresholds.component_id
            and component_values.metric = component_thresholds.metric

),

model_subjects as (

    select
        'model' as subject_type,
        model_accuracy.model_id || '@' || model_accuracy.model_version as subject_id,
        cast(null as text) as component_id,
        model_accuracy.model_id,
        model_accuracy.model_version,
        model_accuracy.as_of_date,
        model_accuracy.window_days,
        thresholds.metric,
        model_accuracy.accuracy as metric_value,
        model_accuracy.n_predictions as evidence_count,
        cast(null as bigint) as n_trades,
        cast(null as bigint) as min_trades,
        thresholds.direction,
        thresholds.target_value,
        thresholds.warning_value,
        thresholds.critical_value,
        thresholds.min_evidence

    from model_accuracy
    inner join thresholds
        on
            thresholds.metric = 'model_accuracy'
            and thresholds.component_id is null

),

subjects as (

    select * from component_subjects
    union all
    select * from model_subjects

),

scored as (

    select
        *,
        {{ tradebase.metric_status(
            'metric_value', 'evidence_count', 'min_evidence', 'direction', 'target_value',
            'warning_value', 'critical_value', trades='n_trades', min_trades='min_trades'
        ) }} as status

    from subjects

),

final as (

    select
        cast({{ tradebase.stable_id(
            ['subject_type', 'subject_id', 'metric', 'window_days', 'as_of_date']
        ) }} as text) as alert_id,
        cast(subject_type as text) as subject_type,
        cast(subject_id as text) as subject_id,
        cast(component_id as text) as component_id,
        cast(model_id as text) as model_id,
        cast(model_version as text) as model_version,
        cast(as_of_date as date) as as_of_date,
        cast(window_days as integer) as window_days,
        cast(metric as text) as metric,
        cast(n_trades as bigint) as n_trades,
        cast(direction as text) as direction,
        cast(metric_value as double precision) as value,  -- noqa: RF04
        cast(status as text) as status,
        cast({{ tradebase.threshold_crossed('status') }} as text) as threshold_crossed,
        cast({{ tradebase.threshold_crossed_value(
            'status', 'target_value', 'warning_value', 'critical_value'
        ) }} as double precision) as threshold_value,
        cast(evidence_count as bigint) as evidence_count,
        cast(min_evidence as bigint) as min_evidence,
        cast(status in ('warning', 'critical') as boolean) as is_alert

    from scored

)

select * from final
