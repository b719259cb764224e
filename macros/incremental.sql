{#-
    Incremental builds of the trade-level models (docs/benchmarks.md, "Scale"). A trade row has
    to be recomputed when the trade was loaded or corrected since the last build (a correction
    sets raw_trades.loaded_at: the ingest never rewrites a loaded trade), or when a daily bar on
    or before its entry date was loaded since (its regime at entry may have changed). The
    watermark is the newest loaded_at the model already holds, moved back by
    var incremental_lookback_hours so an ingest that committed after a build with an earlier
    loaded_at is still picked up. The bounds are read once and inlined as literals, so the
    trades scan can prune on them.
-#}

{#- A SQL predicate on a trades relation selecting the trades to recompute; `true` when the
    model is built from scratch. -#}
{% macro trades_to_recompute(loaded_at_col, entry_date_col) -%}
    {%- if not (execute and is_incremental()) -%}
        true
    {%- else -%}
        {%- set since = tradebase.incremental_watermark() -%}
        {%- if since is none -%}
            true
        {%- else -%}
            {%- set bars_since = tradebase.first_bar_date_loaded_since(since) -%}
            ({{ loaded_at_col }} > {{ since }}
            {%- if bars_since is not none %} or {{ entry_date_col }} >= {{ bars_since }}{% endif %})
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- max(loaded_at) of {{ this }} minus the lookback, as a timestamp literal; none when empty. -#}
{% macro incremental_watermark() -%}
    {%- set lookback = var('incremental_lookback_hours') | int -%}
    {%- set query -%}
        select cast(max(loaded_at) as varchar(32)) from {{ this }}
    {%- endset -%}
    {%- set newest = run_query(query).columns[0].values()[0] -%}
    {%- if newest is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return("(cast('" ~ newest ~ "' as timestamp) - interval '" ~ lookback ~ " hours')") }}
{%- endmacro %}


{#- The earliest bar date among bars loaded after `since` (a timestamp expression), moved one
    day forward (a trade reads the bar before its entry date), as a date literal; none when no
    bar was loaded since. Minute bars count: they change their day's daily bar. -#}
{% macro first_bar_date_loaded_since(since) -%}
    {%- set query -%}
        select cast(min(bar_date) as varchar(10)) from {{ ref('stg_raw__bars') }}
        where loaded_at > {{ since }}
    {%- endset -%}
    {%- set first = run_query(query).columns[0].values()[0] -%}
    {%- if first is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(tradebase.add_days("cast('" ~ first ~ "' as date)", 1)) }}
{%- endmacro %}
