-- Classifier quality of each model version over trailing windows ending on as_of_date, on the
-- predictions whose actual label is known (metrics.md "Classifier metrics"). One row per
-- model_id, model_version and window; NULL wherever a metric is undefined.
with

predictions as (

    select * from {{ ref('stg_raw__predictions') }}

),

as_of as (

    select {{ tradebase.as_of_date() }} as as_of_date

),

windows as (

    {{ tradebase.performance_windows() }}

),

model_versions as (

    select distinct
        model_id,
        model_version

    from predictions

),

model_windows as (

    select
        model_versions.model_id,
        model_versions.model_version,
        windows.window_days,
        as_of.as_of_date

    from model_versions
    cross join windows
    cross join as_of

),

labelled as (

    select
        predictions.model_id,
        predictions.model_version,
        predictions.prediction_date,
        predictions.predicted_label,
        predictions.predicted_proba,
        predictions.actual_label,
        as_of.as_of_date

    from predictions
    cross join as_of
    where
        predictions.actual_label is not null
        and predictions.prediction_date <= as_of.as_of_date
        and predictions.prediction_date
        > {{ tradebase.add_days('as_of.as_of_date', '-' ~ tradebase.max_performance_window()) }}

),

in_windows as (

    select
        labelled.model_id,
        labelled.model_version,
        windows.window_days,
        labelled.predicted_label,
        labelled.predicted_proba,
        labelled.actual_label,
        labelled.predicted_proba is not null as has_proba,
        -- log loss clips p to [1e-15, 1 - 1e-15] (sklearn's eps).
        case
            when labelled.predicted_proba < 1e-15 then 1e-15
            when labelled.predicted_proba > 1 - 1e-15 then 1 - 1e-15
            else labelled.predicted_proba
        end as clipped_proba

    from labelled
    cross join windows
    where
        labelled.prediction_date
        > {{ tradebase.add_days('labelled.as_of_date', '-windows.window_days') }}

),

-- Mann-Whitney AUC needs average ranks of p: rank() is the first rank of a tie group, so the
-- average is rank() + (ties - 1) / 2.
ranked as (

    select
        *,
        case
            when has_proba
                then
                    cast(rank() over (
                        partition by model_id, model_version, window_days, has_proba
                        order by predicted_proba
                    ) as double precision)
                    + cast(count(*) over (
                        partition by
                            model_id, model_version, window_days, has_proba, predicted_proba
                    ) - 1 as double precision) / 2
        end as proba_rank

    from in_windows

),

aggregated as (

    select
        model_id,
        model_version,
        window_days,
        count(*) as n_predictions,
        sum(case when has_proba then 1 else 0 end) as n_with_proba,
        sum(case when actual_label = 1 then 1 else 0 end) as n_positive,
        sum(case when predicted_label = actual_label then 1 else 0 end) as n_correct,
        sum(case when predicted_label = 1 and actual_label = 1 then 1 else 0 end) as n_true_positive,
        sum(case when predicted_label = 1 and actual_label = 0 then 1 else 0 end) as n_false_positive,
        sum(case when predicted_label = 0 and actual_label = 1 then 1 else 0 end) as n_false_negative,
        avg((predicted_proba - actual_label) * (predicted_proba - actual_label)) as brier_score,
        -avg(
            actual_label * ln(clipped_proba) + (1 - actual_label) * ln(1 - clipped_proba)
        ) as log_loss,
        sum(case when has_proba and actual_label = 1 then 1 else 0 end) as n_positive_scored,
        sum(case when has_proba and actual_label = 0 then 1 else 0 end) as n_negative_scored,
        sum(case when has_proba and actual_label = 1 then proba_rank else 0 end) as positive_rank_sum

    from ranked
    group by model_id, model_version, window_days

),

joined as (

    select
        model_windows.model_id,
        model_windows.model_version,
        model_windows.as_of_date,
        model_windows.window_days,
        coalesce(aggregated.n_predictions, 0) as n_predictions,
        coalesce(aggregated.n_with_proba, 0) as n_with_proba,
        coalesce(aggregated.n_positive, 0) as n_positive,
        aggregated.n_correct,
        aggregated.n_true_positive,
        aggregated.n_false_positive,
        aggregated.n_false_negative,
        aggregated.brier_score,
        aggregated.log_loss,
        cast(aggregated.n_positive_scored as double precision) as n_positive_scored,
        cast(aggregated.n_negative_scored as double precision) as n_negative_scored,
        aggregated.positive_rank_sum

    from model_windows
    left join aggregated
        on
            model_windows.model_id = aggregated.model_id
            and model_windows.model_version = aggregated.model_version
            and model_windows.window_days = aggregated.window_days

),

final as (

    select
        cast(model_id as text) as model_id,
        cast(model_version as text) as model_version,
        cast(as_of_date as date) as as_of_date,
        cast(window_days as integer) as window_days,
        cast(n_predictions as bigint) as n_predictions,
        cast(n_with_proba as bigint) as n_with_proba,
        cast(n_positive as bigint) as n_positive,
        cast(
            cast(n_correct as double precision) / nullif(n_predictions, 0)
            as double precision
        ) as accuracy,
        cast(
            cast(n_true_positive as double precision)
            / nullif(n_true_positive + n_false_positive, 0)
            as double precision
        ) as precision,
        cast(
            cast(n_true_positive as double precision)
            / nullif(n_true_positive + n_false_negative, 0)
            as double precision
        ) as recall,
        cast(brier_score as double precision) as brier_score,
        cast(log_loss as double precision) as log_loss,
        cast(
            (positive_rank_sum - n_positive_scored * (n_positive_scored + 1) / 2)
            / nullif(n_positive_scored * n_negative_scored, 0)
            as double precision
        ) as auc

    from joined

)

select * from final
