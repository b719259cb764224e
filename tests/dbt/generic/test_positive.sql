{#- Fails on rows whose column is zero or negative; NULL passes (not_null says otherwise). -#}
{% test positive(model, column_name) %}

select * from {{ model }}
where {{ column_name }} <= 0

{% endtest %}
