{#-
    IDENTIFY: the threshold logic shared by mart_metric_alerts and fct_rolling_metrics_daily, the
    identify dbt vars rendered as SQL, and the stable ids. Rules live in seeds/recommendation_rules.csv.
-#}

{#-
    Status of a metric value against its thresholds (seeds/alert_thresholds.csv). Too little
    evidence, or an undefined value, is insufficient_data and never an alarm (statistics.md §4);
    with `trades`, fewer closed trades than `min_trades` is insufficient too (alerts only: the
    rolling daily series keeps the per-metric evidence so periods can be traced day by day).
    higher_is_better: critical if value < critical, warning if < warning, below_target if
    <= target, else ok. lower_is_better mirrors it: > critical, > warning, >= target.
-#}
{% macro metric_status(
    value, evidence, min_evidence, direction, target, warning, critical,
    trades=none, min_trades=none
) -%}
    (case
        when {{ value }} is null or {{ evidence }} < {{ min_evidence }} then 'insufficient_data'
        {%- if trades is not none %}
        when coalesce({{ trades }} < {{ min_trades }}, false) then 'insufficient_data'
        {%- endif %}
        when {{ direction }} = 'higher_is_better' and {{ value }} < {{ critical }} then 'critical'
        when {{ direction }} = 'higher_is_better' and {{ value }} < {{ warning }} then 'warning'
        when {{ direction }} = 'higher_is_better' and {{ value }} <= {{ target }} then 'below_target'
        when {{ direction }} = 'lower_is_better' and {{ value }} > {{ critical }} then 'critical'
        when {{ direction }} = 'lower_is_better' and {{ value }} > {{ warning }} then 'warning'
        when {{ direction }} = 'lower_is_better' and {{ value }} >= {{ target }} then 'below_target'
        else 'ok'
    end)
{%- endmacro %}


{#- The threshold a status crossed: 'target' for below_target, NULL for ok/insufficient_data. -#}
{% macro threshold_crossed(status) -%}
    (case {{ status }}
        when 'critical' then 'critical'
        when 'warning' then 'warning'
        when 'below_target' then 'target'
    end)
{%- endmacro %}


{#- The value of the threshold a status crossed (NULL when none). -#}
{% macro threshold_crossed_value(status, target, warning, critical) -%}
    (case {{ status }}
        when 'critical' then {{ critical }}
        when 'warning' then {{ warning }}
        when 'below_target' then {{ target }}
    end)
{%- endmacro %}


{#-
    A stable text id: md5 of the parts cast to text and joined by '|' (NULL as ''), like
    dbt_utils.generate_surrogate_key; md5() is the same function on DuckDB and PostgreSQL.
-#}
{% macro stable_id(parts) -%}
    md5(
    {%- for part in parts %}
        coalesce(cast({{ part }} as text), '')
        {%- if not loop.last %} || '|' ||{% endif %}
    {%- endfor %}
    )
{%- endmacro %}


{#- A number as text with a fixed number of decimals (for reasons people read), same on both. -#}
{% macro format_decimal(expr, places) -%}
    {{ return(adapter.dispatch('format_decimal', 'tradebase')(expr, places)) }}
{%- endmacro %}

{% macro duckdb__format_decimal(expr, places) -%}
    printf('%.{{ places | int }}f', cast({{ expr }} as double precision))
{%- endmacro %}

{% macro postgres__format_decimal(expr, places) -%}
    cast(round(cast({{ expr }} as numeric), {{ places | int }}) as text)
{%- endmacro %}


{#- A list var as a Python list of positive whole numbers (a single number is a list of one). -#}
{% macro _positive_int_list(name, default) -%}
    {%- set values = var(name, default) -%}
    {%- if values is string or values is number -%}
        {%- set values = [values] -%}
    {%- endif -%}
    {%- if values | length == 0 -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ " must list at least one window") }}
    {%- endif -%}
    {%- for w in values -%}
        {%- if not (w | string).isdigit() or (w | int) < 1 -%}
            {{ exceptions.raise_compiler_error(name ~ " must be positive whole days, got " ~ w) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(values | map('int') | list) }}
{%- endmacro %}


{#- rolling_windows: a query with one row per rolling window (var identify_rolling_windows). -#}
{% macro rolling_windows() -%}
    {%- for w in tradebase._positive_int_list('identify_rolling_windows', [7, 30]) %}
    select cast({{ w }} as integer) as window_days
    {%- if not loop.last %}
    union all
    {%- endif -%}
    {%- endfor -%}
{%- endmacro %}


{#- A positive whole-number identify var, validated. -#}
{% macro identify_days(name, default) -%}
    {%- set value = var(name, default) -%}
    {%- if not (value | string).isdigit() or (value | int) < 1 -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a positive whole number, got " ~ value) }}
    {%- endif -%}
    {{ return(value | int) }}
{%- endmacro %}


{#- First date of the daily series: as_of_date - identify_lookback_days + 1. -#}
{% macro identify_series_start_date(as_of_expr) -%}
    {{ tradebase.add_days(as_of_expr, 1 - tradebase.identify_days('identify_lookback_days', 60)) }}
{%- endmacro %}


{#- First date of the recent daily series (int_strategy_days_filled and the models feeding it):
    what the IDENTIFY series' rolling windows read (the series start minus the longest window
    + 1) and mart_performance's longest window, whichever starts earlier. -#}
{% macro recent_data_start_date(as_of_expr) -%}
    {%- set longest = tradebase._positive_int_list('identify_rolling_windows', [7, 30]) | max -%}
    {%- set identify_offset = 2 - tradebase.identify_days('identify_lookback_days', 60) - longest -%}
    {%- set performance_offset = 1 - (tradebase.max_performance_window() | int) -%}
    {{ tradebase.add_days(as_of_expr, [identify_offset, performance_offset] | min) }}
{%- endmacro %}
