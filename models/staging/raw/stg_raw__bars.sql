with

source as (

    select * from {{ source('raw', 'raw_bars') }}

),

renamed as (

    select
        symbol,
        ts as bar_at,
        cast(ts as date) as bar_date,
        open as open_price,
        high as high_price,
        low as low_price,
        close as close_price,
        volume,
        ingest_id,
        source_row,
        loaded_at

    from source

)

select * from renamed
