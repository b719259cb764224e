-- Labelled predictions per model and prediction date over the recent data range: how many,
-- and how many the model got right (metrics.md "Classifier metrics": accuracy = mean(label = y)).
-- All versions of a model together: the rolling accuracy follows the model a component uses.
with

predictions as (

    select * from {{ ref('stg_raw__predictions') }}

),

as_of as (

    select {{ tradebase.as_of_date() }} as as_of_date

),

labelled as (

    select
        predictions.model_id,
        predictions.prediction_date,
        predictions.predicted_label,
        predictions.actual_label

    from predictions
    cross join as_of
    where
        predictions.actual_label is not null
        and predictions.prediction_date <= as_of.as_of_date
        and predictions.prediction_date >= {{ tradebase.recent_data_start_date('as_of.as_of_date') }}

),

daily as (

    select
        model_id,
        prediction_date,
        count(*) as n_labelled,
        sum(case when predicted_label = actual_label then 1 else 0 end) as n_correct

    from labelled
    group by model_id, prediction_date

)

select * from daily
