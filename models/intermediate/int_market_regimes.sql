-- Market regime of each symbol on each daily bar (metrics.md "Market regimes"):
-- rv20 = stddev_samp of the last 20 daily log returns * sqrt(252); its z-score against the
-- previous 252 days' rv20 (a trailing z-score, because PostgreSQL has no ordered-set window
-- aggregate); trend = close vs its 200-day SMA. NULL wherever the history is too short.
with

daily_bars as (

    select * from {{ ref('int_bars_aggregated_to_daily') }}

),

returns as (

    select
        symbol,
        bar_date,
        close_price,
        ln(
            close_price / lag(close_price) over (partition by symbol order by bar_date)
        ) as log_return

    from daily_bars

),

rolling as (

    select
        symbol,
        bar_date,
        close_price,
        log_return,
        count(log_return) over (
            partition by symbol order by bar_date
            rows between 19 preceding and current row
        ) as n_returns_20,
        stddev_samp(log_return) over (
            partition by symbol order by bar_date
            rows between 19 preceding and current row
        ) as stddev_20,
        count(close_price) over (
            partition by symbol order by bar_date
            rows between 199 preceding and current row
        ) as n_closes_200,
        avg(close_price) over (
            partition by symbol order by bar_date
            rows between 199 preceding and current row
        ) as sma_200

    from returns

),

realised_volatility as (

    select
        symbol,
        bar_date,
        close_price,
        log_return,
        n_closes_200,
        sma_200,
        case
            when n_returns_20 = 20 then stddev_20 * sqrt(252.0)
        end as rv20

    from rolling

),

trailing_history as (

    select
        symbol,
        bar_date,
        close_price,
        log_return,
        n_closes_200,
        sma_200,
        rv20,
        count(rv20) over (
            partition by symbol order by bar_date
            rows between 252 preceding and 1 preceding
        ) as n_rv20_252,
        avg(rv20) over (
            partition by symbol order by bar_date
            rows between 252 preceding and 1 preceding
        ) as rv20_mean_252,
        stddev_samp(rv20) over (
            partition by symbol order by bar_date
            rows between 252 preceding and 1 preceding
        ) as rv20_stddev_252

    from realised_volatility

),

scored as (

    select
        symbol,
        bar_date,
        close_price,
        log_return,
        rv20,
        sma_200,
        case
            when rv20 is not null and n_rv20_252 = 252 and rv20_stddev_252 > 0
                then (rv20 - rv20_mean_252) / rv20_stddev_252
        end as rv20_zscore,
        case
            when n_closes_200 = 200 and close_price > sma_200 then 'up'
            when n_closes_200 = 200 then 'down'
        end as trend

    from trailing_history

),

labelled as (

    select
        symbol,
        bar_date,
        close_price,
        log_return,
        rv20,
        rv20_zscore,
        sma_200,
        trend,
        case
            when rv20_zscore > 0.5 then 'high'
            when rv20_zscore < -0.5 then 'low'
            when rv20_zscore is not null then 'mid'
        end as volatility

    from scored

),

final as (

    select
        symbol,
        bar_date,
        close_price,
        log_return,
        rv20,
        rv20_zscore,
        sma_200,
        trend,
        volatility,
        case
            when trend is not null and volatility is not null
                then trend || '_' || volatility
        end as regime

    from labelled

)

select * from final
