{#-
    Fails on rows where equity_end differs from equity_start + pnl by more than a relative
    tolerance (var equity_identity_tolerance), or where a day's equity_start is not the previous
    day's equity_end: equity compounds without leaks.
-#}
{% test equity_identity(model, column_name, equity_start='equity_start', pnl='pnl', partition_by='component_id', order_by='date_day') %}

{%- set tolerance = var('equity_identity_tolerance', 1.0e-9) %}

with

ordered as (

    select
        {{ column_name }} as equity_end,
        {{ equity_start }} as equity_start,
        {{ pnl }} as pnl,
        lag({{ column_name }}) over (
            partition by {{ partition_by }} order by {{ order_by }}
        ) as previous_equity_end

    from {{ model }}

),

violations as (

    select * from ordered
    where
        abs(equity_end - (equity_start + pnl))
        > {{ tolerance }} * (1 + abs(equity_start) + abs(pnl))
        or (
            previous_equity_end is not null
            and abs(equity_start - previous_equity_end)
            > {{ tolerance }} * (1 + abs(previous_equity_end))
        )

)

select * from violations

{% endtest %}
