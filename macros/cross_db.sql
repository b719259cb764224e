{#-
    Dialect differences between DuckDB and PostgreSQL, each behind adapter.dispatch like
    dbt-utils' cross-database macros. Models call these and never a dialect's own syntax.
-#}

{#- Whole days between two dates as an integer: `end_date - start_date`. -#}
{% macro days_between(start_date, end_date) -%}
    {{ return(adapter.dispatch('days_between', 'tradebase')(start_date, end_date)) }}
{%- endmacro %}

{% macro duckdb__days_between(start_date, end_date) -%}
    date_diff('day', {{ start_date }}, {{ end_date }})
{%- endmacro %}

{% macro postgres__days_between(start_date, end_date) -%}
    ({{ end_date }} - {{ start_date }})
{%- endmacro %}


{#- A date moved by a whole number of days (negative moves back). -#}
{% macro add_days(date_expr, n_days) -%}
    {{ return(adapter.dispatch('add_days', 'tradebase')(date_expr, n_days)) }}
{%- endmacro %}

{% macro duckdb__add_days(date_expr, n_days) -%}
    cast({{ date_expr }} + cast({{ n_days }} as integer) as date)
{%- endmacro %}

{% macro postgres__add_days(date_expr, n_days) -%}
    cast({{ date_expr }} + cast({{ n_days }} as integer) as date)
{%- endmacro %}


{#- Seconds from one timestamp to another, as double precision (fractional seconds kept). -#}
{% macro seconds_between(start_ts, end_ts) -%}
    {{ return(adapter.dispatch('seconds_between', 'tradebase')(start_ts, end_ts)) }}
{%- endmacro %}

{% macro duckdb__seconds_between(start_ts, end_ts) -%}
    cast(epoch({{ end_ts }}) - epoch({{ start_ts }}) as double precision)
{%- endmacro %}

{% macro postgres__seconds_between(start_ts, end_ts) -%}
    cast(extract(epoch from ({{ end_ts }} - {{ start_ts }})) as double precision)
{%- endmacro %}


{#- Today's date in UTC, whatever the session's time zone. -#}
{% macro current_utc_date() -%}
    {{ return(adapter.dispatch('current_utc_date', 'tradebase')()) }}
{%- endmacro %}

{% macro duckdb__current_utc_date() -%}
    cast(timezone('UTC', get_current_timestamp()) as date)
{%- endmacro %}

{% macro postgres__current_utc_date() -%}
    cast(timezone('UTC', now()) as date)
{%- endmacro %}


{#-
    A set-returning expression: one row per calendar date from start_date to end_date
    (inclusive), for the select list of a query over rows that carry the bounds. This is the
    daily date spine: `select id, {{ date_series('a', 'b') }} as date_day from bounds`.
-#}
{% macro date_series(start_date, end_date) -%}
    {{ return(adapter.dispatch('date_series', 'tradebase')(start_date, end_date)) }}
{%- endmacro %}

{% macro duckdb__date_series(start_date, end_date) -%}
    cast(unnest(generate_series(cast({{ start_date }} as date), cast({{ end_date }} as date), interval 1 day)) as date)
{%- endmacro %}

{% macro postgres__date_series(start_date, end_date) -%}
    cast(generate_series(cast({{ start_date }} as date), cast({{ end_date }} as date), interval '1 day') as date)
{%- endmacro %}
