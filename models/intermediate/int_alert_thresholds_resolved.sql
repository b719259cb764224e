-- The thresholds that apply to each component and metric: the seed row whose component_id is
-- the component when there is one (an override replaces the whole default row), else the default
-- row (component_id empty). Model subjects use the default model_accuracy row.
with

thresholds as (

    select * from {{ ref('alert_thresholds') }}

),

components as (

    select * from {{ ref('components') }}

),

defaults as (

    select
        metric,
        direction,
        target_value,
        warning_value,
        critical_value,
        min_evidence,
        evidence_unit,
        min_trades

    from thresholds
    where component_id is null

),

overrides as (

    select
        component_id,
        metric,
        direction,
        target_value,
        warning_value,
        critical_value,
        min_evidence,
        evidence_unit,
        min_trades

    from thresholds
    where component_id is not null

),

component_metrics as (

    select
        components.component_id,
        defaults.metric

    from components
    cross join defaults

),

resolved as (

    select
        component_metrics.component_id,
        component_metrics.metric,
        overrides.component_id is not null as is_override,
        coalesce(overrides.direction, defaults.direction) as direction,
        case
            when overrides.component_id is not null then overrides.target_value
            else defaults.target_value
        end as target_value,
        case
            when overrides.component_id is not null then overrides.warning_value
            else defaults.warning_value
        end as warning_value,
        case
            when overrides.component_id is not null then overrides.critical_value
            else defaults.critical_value
        end as critical_value,
        case
            when overrides.component_id is not null then overrides.min_evidence
            else defaults.min_evidence
        end as min_evidence,
        coalesce(overrides.evidence_unit, defaults.evidence_unit) as evidence_unit,
        case
            when overrides.component_id is not null then overrides.min_trades
            else defaults.min_trades
        end as min_trades

    from component_metrics
    inner join defaults
        on component_metrics.metric = defaults.metric
    left join overrides
        on
            component_metrics.component_id = overrides.component_id
            and component_metrics.metric = overrides.metric

)

select * from resolved
