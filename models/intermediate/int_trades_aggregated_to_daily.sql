-- Closed trades rolled up per component and exit date: the number of trades and their net P&L.
-- The one full pass over the trades that the daily equity curve needs, straight from staging so
-- the performance path never waits for the wide fct_trades table. Kept to two aggregates on
-- purpose: at 10M trades each extra aggregate costs more than the rest of the path.
with

trades as (

    select * from {{ ref('stg_raw__trades') }}

),

trade_results as (

    select
        component_id,
        exit_date,
        {{ tradebase.trade_net_pnl('side', 'entry_price', 'exit_price', 'quantity', 'fees') }} as net_pnl

    from trades

),

daily as (

    select
        component_id,
        exit_date,
        count(*) as n_trades,
        sum(net_pnl) as pnl

    from trade_results
    group by component_id, exit_date

)

select * from daily
