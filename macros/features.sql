{#-
    The point-in-time feature mart (docs/features.md): the per-symbol bar windows every feature is
    built from, the label horizon var, and the generic tests of fct_bar_features. A feature may
    only use a backward window (`bars_window`) or lag(); lead() belongs to the label alone.
-#}

{#-
    The window over one symbol's bars in time order. With n_bars: the frame of the last n_bars
    bars ending `skip` bars back (skip = 0: ending on the current bar, which is included;
    skip = 1: the n_bars bars before it). Never reaches past the current bar.
-#}
{% macro bars_window(n_bars=none, skip=0) -%}
    {%- if n_bars is none -%}
        over (partition by symbol order by bar_at)
    {%- else -%}
        {%- if (n_bars | int) < 1 or (skip | int) < 0 -%}
            {{ exceptions.raise_compiler_error("bars_window needs n_bars >= 1 and skip >= 0") }}
        {%- endif -%}
        over (
            partition by symbol order by bar_at
            rows between {{ (n_bars | int) - 1 + (skip | int) }} preceding
            and {% if (skip | int) == 0 %}current row{% else %}{{ skip | int }} preceding{% endif %}
        )
    {%- endif -%}
{%- endmacro %}


{#- close / close k bars back - 1: NULL while fewer than k earlier bars exist. -#}
{% macro simple_return(price, k) -%}
    ({{ price }} / lag({{ price }}, {{ k | int }}) {{ tradebase.bars_window() }} - 1)
{%- endmacro %}


{#-
    A trailing aggregate (avg, stddev_samp, sum, min, max) of `expr` over the window, defined
    only when all n_bars rows of the frame hold a non-NULL `expr` (warm-up and gaps give NULL).
-#}
{% macro trailing(aggregate, expr, n_bars, skip=0) -%}
    (case
        when count({{ expr }}) {{ tradebase.bars_window(n_bars, skip) }} = {{ n_bars | int }}
            then {{ aggregate }}({{ expr }}) {{ tradebase.bars_window(n_bars, skip) }}
    end)
{%- endmacro %}


{#- The label horizon h in bars (var feature_label_horizon_bars), a positive whole number. -#}
{% macro feature_label_horizon_bars() -%}
    {%- set value = var('feature_label_horizon_bars', 5) -%}
    {%- if not (value | string).isdigit() or (value | int) < 1 -%}
        {{ exceptions.raise_compiler_error(
            "var feature_label_horizon_bars must be a whole number of bars >= 1, got " ~ value
        ) }}
    {%- endif -%}
    {{ return(value | int) }}
{%- endmacro %}


{#-
    Fails on rows whose column is NaN or infinite: a feature is a finite number or NULL. The
    literals parse on both warehouses, and both treat NaN as equal to NaN.
-#}
{% test finite(model, column_name) %}

select * from {{ model }}
where
    {{ column_name }} in (
        cast('NaN' as double precision),
        cast('Infinity' as double precision),
        cast('-Infinity' as double precision)
    )

{% endtest %}


{#-
    On the label's t1 column (label_resolved_at), fails on rows whose label columns disagree:
    forward_return, label and t1 are NULL together; a label resolves after its own bar; and
    label = 1 exactly when forward_return > 0.
-#}
{% test label_resolution(model, column_name) %}

select * from {{ model }}
where
    (forward_return is null) <> (label is null)
    or (forward_return is null) <> ({{ column_name }} is null)
    or {{ column_name }} <= bar_at
    or (forward_return > 0 and label <> 1)
    or (forward_return <= 0 and label <> 0)

{% endtest %}
