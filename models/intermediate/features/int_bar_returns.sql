-- One row per bar: the returns and price changes every rolling feature builds on, each from
-- this bar and earlier bars of the symbol only (lag(), never lead(); docs/features.md).
-- Simple returns close_t / close_{t-k} - 1; the one-bar log return ln(close_t / close_{t-1});
-- the one-bar gain and loss of Cutler's RSI. NULL while the history is too short.
with

bars as (

    select * from {{ ref('stg_raw__bars') }}

),

changes as (

    select
        symbol,
        bar_at,
        bar_date,
        open_price,
        high_price,
        low_price,
        close_price,
        volume,
        {{ tradebase.simple_return('close_price', 1) }} as f_ret_1,
        {{ tradebase.simple_return('close_price', 5) }} as f_ret_5,
        {{ tradebase.simple_return('close_price', 10) }} as f_ret_10,
        {{ tradebase.simple_return('close_price', 20) }} as f_ret_20,
        ln(close_price / lag(close_price) {{ tradebase.bars_window() }}) as log_return_1,
        close_price - lag(close_price) {{ tradebase.bars_window() }} as price_change_1

    from bars

),

final as (

    select
        symbol,
        bar_at,
        bar_date,
        open_price,
        high_price,
        low_price,
        close_price,
        volume,
        f_ret_1,
        f_ret_5,
        f_ret_10,
        f_ret_20,
        log_return_1,
        case when price_change_1 > 0 then price_change_1 when price_change_1 <= 0 then 0.0 end as gain_1,
        case when price_change_1 < 0 then -price_change_1 when price_change_1 >= 0 then 0.0 end as loss_1

    from changes

)

select * from final
