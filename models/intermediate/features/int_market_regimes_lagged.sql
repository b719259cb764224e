-- One row per symbol and daily bar date: the market regime of the symbol's PREVIOUS daily bar
-- (the last bar_date strictly before this one), the one a bar of this date may use. The same
-- day's regime needs that day's close, unknown before its last bar, and no rule using past
-- bars only can tell a daily bar from the first bar of an intraday day (docs/features.md).
with

regimes as (

    select * from {{ ref('int_market_regimes') }}

),

final as (

    select
        symbol,
        bar_date,
        lag(bar_date) over (partition by symbol order by bar_date) as regime_bar_date,
        lag(trend) over (partition by symbol order by bar_date) as trend,
        lag(volatility) over (partition by symbol order by bar_date) as volatility

    from regimes

)

select * from final
