-- One row per symbol and UTC calendar date: intraday bars rolled up to a daily OHLCV bar
-- (daily input passes through unchanged). Regimes are defined on daily bars (metrics.md).
with

bars as (

    select * from {{ ref('stg_raw__bars') }}

),

ordered as (

    select
        symbol,
        bar_date,
        bar_at,
        open_price,
        high_price,
        low_price,
        close_price,
        volume,
        row_number() over (
            partition by symbol, bar_date order by bar_at
        ) as n_from_open,
        row_number() over (
            partition by symbol, bar_date order by bar_at desc
        ) as n_from_close

    from bars

),

daily as (

    select
        symbol,
        bar_date,
        max(case when n_from_open = 1 then open_price end) as open_price,
        max(high_price) as high_price,
        min(low_price) as low_price,
        max(case when n_from_close = 1 then close_price end) as close_price,
        sum(volume) as volume,
        count(*) as n_bars,
        min(bar_at) as first_bar_at,
        max(bar_at) as last_bar_at

    from ordered
    group by symbol, bar_date

)

select * from daily
