{#- The analysis window parameters (dbt vars), rendered as SQL once for every mart. -#}

{#- as_of_date: the var as a date literal, or today in UTC when the var is null. -#}
{% macro as_of_date() -%}
    {%- set value = var('as_of_date', none) -%}
    {%- if value is none or value == '' -%}
        {{ tradebase.current_utc_date() }}
    {%- else -%}
        {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', value | string) -%}
            {{ exceptions.raise_compiler_error("var as_of_date must be YYYY-MM-DD or null, got " ~ value) }}
        {%- endif -%}
        cast('{{ value }}' as date)
    {%- endif -%}
{%- endmacro %}


{#- performance_windows: a query with one row per window, column window_days (integer). -#}
{% macro performance_windows() -%}
    {%- set windows = var('performance_windows', [7, 14, 30]) -%}
    {%- if windows is string or windows is number -%}
        {%- set windows = [windows] -%}
    {%- endif -%}
    {%- if windows | length == 0 -%}
        {{ exceptions.raise_compiler_error("var performance_windows must list at least one window") }}
    {%- endif -%}
    {%- for w in windows -%}
        {%- if not (w | string).isdigit() or (w | int) < 1 -%}
            {{ exceptions.raise_compiler_error("performance_windows must be positive whole days, got " ~ w) }}
        {%- endif %}
    select cast({{ w | int }} as integer) as window_days
    {%- if not loop.last %}
    union all
    {%- endif -%}
    {%- endfor -%}
{%- endmacro %}


{#- The largest window, as a number, for a single pre-filter before the per-window join. -#}
{% macro max_performance_window() -%}
    {%- set windows = var('performance_windows', [7, 14, 30]) -%}
    {%- if windows is string or windows is number -%}
        {%- set windows = [windows] -%}
    {%- endif -%}
    {{ windows | map('int') | max }}
{%- endmacro %}
