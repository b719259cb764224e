{#-
    Incremental builds of int_trades_aggregated_to_daily (docs/benchmarks.md, "Scale"): one row
    per (component, exit date), recomputed from every trade of the day when a trade of it was
    loaded or corrected since the last build, or was on it before a correction moved it.
-#}

{#- In an incremental build, {watermark: a timestamp expression (the newest loaded_at of
    {{ this }} minus var incremental_lookback_hours), previous_trades: fct_trades as the last
    build left it}; none when every day is to be recomputed: a first or full-refresh build, a
    table built before it had loaded_at, or fct_trades missing or behind {{ this }} (its last
    build failed after this model's), when it cannot tell where the changed trades were. -#}
{% macro trade_days_watermark() -%}
    {%- if not (execute and is_incremental()) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
    {%- set previous = adapter.get_relation(this.database, this.schema, 'fct_trades') -%}
    {%- if 'loaded_at' not in columns or previous is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set query -%}
        select
            cast(max(loaded_at) as varchar(32)),
            coalesce((select max(loaded_at) from {{ previous }}) >= max(loaded_at), false)
        from {{ this }}
    {%- endset -%}
    {%- set row = run_query(query).rows[0] -%}
    {%- if row[0] is none or not row[1] -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set lookback = var('incremental_lookback_hours') | int -%}
    {{ return({
        'watermark': "(cast('" ~ row[0] ~ "' as timestamp) - interval '" ~ lookback ~ " hours')",
        'previous_trades': previous,
    }) }}
{%- endmacro %}


{#-
    The incremental strategy of int_trades_aggregated_to_daily (incremental_strategy='trade_days',
    unique_key [component_id, exit_date]): delete the recomputed days, insert those that still
    have trades. delete+insert on the key would keep the row of a day whose last trade moved away.
-#}
{% macro get_incremental_trade_days_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set temp = arg_dict['temp_relation'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ target }}
    using {{ temp }} as recomputed
    where
        {{ target.identifier }}.component_id = recomputed.component_id
        and {{ target.identifier }}.exit_date = recomputed.exit_date;

    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ temp }}
    where n_trades > 0
{%- endmacro %}
