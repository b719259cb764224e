with

source as (

    select * from {{ source('raw', 'raw_predictions') }}

),

renamed as (

    select
        prediction_id,
        model_id,
        model_version,
        symbol,
        ts as predicted_at,
        cast(ts as date) as prediction_date,
        predicted_label,
        predicted_proba,
        actual_label,
        actual_label is not null as is_labelled,
        ingest_id,
        source_row,
        loaded_at,
        labelled_at

    from source

)

select * from renamed
