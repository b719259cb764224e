{#-
    Fails on each partition whose dates are not one unbroken run of calendar days
    (max - min + 1 must equal the number of distinct dates): a daily series without holes.
-#}
{% test no_date_gaps(model, column_name, partition_by) %}

with

spans as (

    select
        {{ partition_by }},
        min({{ column_name }}) as first_date,
        max({{ column_name }}) as last_date,
        count(distinct {{ column_name }}) as n_dates

    from {{ model }}
    group by {{ partition_by }}

)

select * from spans
where {{ tradebase.days_between('first_date', 'last_date') }} + 1 <> n_dates

{% endtest %}
