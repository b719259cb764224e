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


{#-
    Every row of `trades` (a relation with component_id, exit_date, exited_at) on a
    (component_id, exit_date) of `days`, all of the trades' columns: the trades of the days an
    incremental build recomputes. PostgreSQL looks each day up in the index on raw_trades
    (component_id, exit_ts) through a lateral subquery; as a join, its planner (which cannot
    know how few days there are) sorts every trade for a merge join. DuckDB hashes the days:
    its lateral join is a range join, 3.5x slower.
-#}
{% macro trades_of_days(trades, days) -%}
    {{ return(adapter.dispatch('trades_of_days', 'tradebase')(trades, days)) }}
{%- endmacro %}

{% macro duckdb__trades_of_days(trades, days) -%}
    select {{ trades }}.*
    from {{ trades }}
    inner join {{ days }}
        on
            {{ trades }}.component_id = {{ days }}.component_id
            and {{ trades }}.exit_date = {{ days }}.exit_date
{%- endmacro %}

{% macro postgres__trades_of_days(trades, days) -%}
    select day_trades.*
    from {{ days }}
    cross join lateral (
        select {{ trades }}.*
        from {{ trades }}
        where
            {{ trades }}.component_id = {{ days }}.component_id
            and {{ trades }}.exited_at >= cast({{ days }}.exit_date as timestamp)
            and {{ trades }}.exited_at < cast({{ days }}.exit_date + 1 as timestamp)
        -- Keeps the planner from flattening the subquery back into a join.
        offset 0
    ) as day_trades
{%- endmacro %}
