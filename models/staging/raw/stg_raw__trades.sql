with

source as (

    select * from {{ source('raw', 'raw_trades') }}

),

renamed as (

    select
        trade_id,
        component_id,
        symbol,
        side,
        quantity,
        entry_ts as entered_at,
        exit_ts as exited_at,
        cast(entry_ts as date) as entry_date,
        cast(exit_ts as date) as exit_date,
        entry_price,
        exit_price,
        fees,
        strategy_version,
        variant,
        model_version,
        ingest_id,
        source_row,
        loaded_at

    from source

)

select * from renamed
