-- One row per open recommendation: the alerts, trends, underperforming periods and regime
-- weaknesses of as_of_date mapped to a recommendation type and priority by
-- seeds/recommendation_rules.csv (the one place the rules live). insufficient_data never
-- matches a rule. At most one per component and type: the highest priority wins (then rule_id,
-- the longest window, the strongest statistic). recommendation_id is md5(component_id,
-- recommendation_type, rule_id), without as_of_date, so a problem that persists keeps its id and
-- one that goes away drops out of the table (closes).
with

alerts as (

    select * from {{ ref('mart_metric_alerts') }}

),

trends as (

    select * from {{ ref('mart_metric_trends') }}

),

periods as (

    select * from {{ ref('mart_underperforming_periods') }}

),

regime_performance as (

    select * from {{ ref('mart_regime_performance') }}

),

rules as (

    select * from {{ ref('recommendation_rules') }}

),

component_models as (

    select * from {{ ref('component_models') }}

),

as_of as (

    select {{ tradebase.as_of_date() }} as as_of_date

),

-- Model alerts attach to every component that uses the model (seeds/component_models.csv).
alert_subjects as (

    select
        alerts.component_id,
        cast(null as text) as model_subject,
        alerts.metric,
        alerts.window_days,
        alerts.direction,
        alerts.value,
        alerts.status,
        alerts.threshold_value,
        alerts.evidence_count

    from alerts
    where alerts.subject_type = 'component' and alerts.is_alert

    union all

    select
        component_models.component_id,
        alerts.subject_id as model_subject,
        alerts.metric,
        alerts.window_days,
        alerts.direction,
        alerts.value,
        alerts.status,
        alerts.threshold_value,
        alerts.evidence_count

    from alerts
    inner join component_models
        on alerts.model_id = component_models.model_id
    where alerts.subject_type = 'model' and alerts.is_alert

),

alert_candidates as (

    select
        alert_subjects.component_id,
        rules.rule_id,
        rules.recommendation_type,
        rules.priority,
        alert_subjects.metric,
        alert_subjects.value,
        alert_subjects.threshold_value,
        alert_subjects.window_days,
        cast(null as text) as statistic_name,
        cast(null as double precision) as statistic_value,
        alert_subjects.evidence_count,
        cast(null as text) as regime,
        alert_subjects.model_subject,
        coalesce('Model ' || alert_subjects.model_subject || ': ', '')
        || alert_subjects.metric || ' over the last ' || cast(alert_subjects.window_days as text)
        || ' days is ' || {{ tradebase.format_decimal('alert_subjects.value', 4) }}
        || case when alert_subjects.direction = 'lower_is_better' then ', above' else ', below' end
        || ' its ' || alert_subjects.status || ' threshold of '
        || {{ tradebase.format_decimal('alert_subjects.threshold_value', 4) }}
        || ' (evidence: ' || cast(alert_subjects.evidence_count as text) || ').' as reason

    from alert_subjects
    inner join rules
        on
            rules.source = 'alert'
            and alert_subjects.metric = rules.metric
            and (rules.window_days is null or alert_subjects.window_days = rules.window_days)
            and (
                (rules.trigger = 'critical' and alert_subjects.status = 'critical')
                or (rules.trigger = 'warning_or_worse' and alert_subjects.status in ('warning', 'critical'))
            )

),

trend_candidates as (

    select
        trends.component_id,
        rules.rule_id,
        rules.recommendation_type,
        rules.priority,
        trends.metric,
        trends.slope as value,  -- noqa: RF04
        cast(0 as double precision) as threshold_value,
        trends.window_days,
        'slope_t_stat' as statistic_name,
        trends.slope_t_stat as statistic_value,
        trends.n_points as evidence_count,
        cast(null as text) as regime,
        cast(null as text) as model_subject,
        'Rolling ' || cast(trends.window_days as text) || '-day ' || trends.metric
        || ' is getting worse over the last '
        || cast({{ tradebase.days_between('trends.trend_start_date', 'trends.as_of_date') }} + 1 as text)
        || ' days: slope ' || {{ tradebase.format_decimal('trends.slope', 4) }}
        || ' per day, t = ' || {{ tradebase.format_decimal('trends.slope_t_stat', 2) }}
        || ' over ' || cast(trends.n_points as text) || ' days.' as reason

    from trends
    inner join rules
        on
            rules.source = 'trend'
            and rules.trigger = 'declining'
            and trends.metric = rules.metric
            and (rules.window_days is null or trends.window_days = rules.window_days)
    where trends.is_declining

),

period_candidates as (

    select
        periods.component_id,
        rules.rule_id,
        rules.recommendation_type,
        rules.priority,
        periods.metric,
        periods.worst_value as value,  -- noqa: RF04
        cast(null as double precision) as threshold_value,
        periods.window_days,
        'period_days' as statistic_name,
        cast(periods.n_days as double precision) as statistic_value,
        cast(periods.n_days as bigint) as evidence_count,
        periods.dominant_regime as regime,
        cast(null as text) as model_subject,
        'Rolling ' || cast(periods.window_days as text) || '-day ' || periods.metric
        || ' has been at warning or worse for ' || cast(periods.n_days as text)
        || ' days since ' || cast(periods.start_date as text) || ' (worst '
        || {{ tradebase.format_decimal('periods.worst_value', 4) }} || ', P&L '
        || {{ tradebase.format_decimal('periods.pnl', 2) }} || ').' as reason

    from periods
    inner join rules
        on
            rules.source = 'period'
            and rules.trigger = 'open_period'
            and periods.metric = rules.metric
            and (rules.window_days is null or periods.window_days = rules.window_days)
    where
        periods.is_open
        and periods.n_days >= coalesce(rules.min_evidence, 1)

),

-- t of the mean trade return = per-trade Sharpe * sqrt(n) (one-sample t against 0).
regime_tests as (

    select
        component_id,
        regime,
        window_days,
        n_trades,
        avg_trade_return,
        sharpe_per_trade * sqrt(cast(n_trades as double precision)) as t_stat

    from regime_performance
    where regime <> 'unknown'

),

regime_candidates as (

    select
        regime_tests.component_id,
        rules.rule_id,
        rules.recommendation_type,
        rules.priority,
        rules.metric,
        regime_tests.avg_trade_return as value,  -- noqa: RF04
        cast(0 as double precision) as threshold_value,
        regime_tests.window_days,
        't_stat' as statistic_name,
        regime_tests.t_stat as statistic_value,
        regime_tests.n_trades as evidence_count,
        regime_tests.regime,
        cast(null as text) as model_subject,
        'In regime ' || regime_tests.regime || ' the mean trade return over the last '
        || cast(regime_tests.window_days as text) || ' days is '
        || {{ tradebase.format_decimal('regime_tests.avg_trade_return', 4) }}
        || ' (t = ' || {{ tradebase.format_decimal('regime_tests.t_stat', 2) }} || ', '
        || cast(regime_tests.n_trades as text) || ' trades).' as reason

    from regime_tests
    inner join rules
        on
            rules.source = 'regime'
            and rules.trigger = 'significant_loss'
            and (rules.window_days is null or regime_tests.window_days = rules.window_days)
    where
        regime_tests.n_trades >= coalesce(rules.min_evidence, 30)
        and regime_tests.t_stat <= coalesce(rules.max_t_stat, -2)

),

candidates as (

    select * from alert_candidates
    union all
    select * from trend_candidates
    union all
    select * from period_candidates
    union all
    select * from regime_candidates

),

ranked as (

    select
        *,
        row_number() over (
            partition by component_id, recommendation_type
            order by
                priority asc,
                rule_id asc,
                window_days desc,
                statistic_value asc,
                regime asc,
                model_subject asc
        ) as candidate_rank

    from candidates

),

final as (

    select
        cast({{ tradebase.stable_id(
            ['ranked.component_id', 'ranked.recommendation_type', 'ranked.rule_id']
        ) }} as text) as recommendation_id,
        cast(ranked.component_id as text) as component_id,
        cast(ranked.recommendation_type as text) as recommendation_type,
        cast(ranked.priority as integer) as priority,
        cast(ranked.rule_id as text) as rule_id,
        cast(ranked.reason as text) as reason,
        cast(ranked.metric as text) as metric,
        cast(ranked.value as double precision) as value,  -- noqa: RF04
        cast(ranked.threshold_value as double precision) as threshold_value,
        cast(ranked.window_days as integer) as window_days,
        cast(ranked.statistic_name as text) as statistic_name,
        cast(ranked.statistic_value as double precision) as statistic_value,
        cast(as_of.as_of_date as date) as as_of_date,
        cast(ranked.evidence_count as bigint) as evidence_count,
        cast(ranked.regime as text) as regime,
        cast(ranked.model_subject as text) as model_subject

    from ranked
    cross join as_of
    where ranked.candidate_rank = 1

)

select * from final
