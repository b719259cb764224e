{#-
    Which rows a data test reads (docs/benchmarks.md, "Data tests in the hourly build").
    dbt wraps the model a generic test reads in get_where_subquery; this keeps dbt's `where`
    config and, when var data_tests_scope is 'changed' (the hourly incremental build: runner
    analyze without --full-refresh), restricts the tests of an incremental model, or of a
    staging view over a raw table, to its rows loaded within var incremental_lookback_hours of
    its newest one: the new and corrected rows this build wrote or read. A full-refresh build (the nightly task, `runner analyze --full-refresh`)
    tests every row of every model.
-#}
{% macro default__get_where_subquery(relation) -%}
    {%- set filters = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do filters.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- if tradebase.tests_recent_rows_only() -%}
        {#- The bound as a literal: PostgreSQL then reads the rows through the index on
            loaded_at; with a subquery its planner expects a third of the table and scans it. -#}
        {%- set newest_query -%}
            select cast(max(loaded_at) as varchar(32)) from {{ relation }}
        {%- endset -%}
        {%- set newest = run_query(newest_query).columns[0].values()[0] if execute else none -%}
        {%- set since = "cast('" ~ newest ~ "' as timestamp)" if newest is not none
            else "(select max(loaded_at) from " ~ relation ~ ")" -%}
        {%- do filters.append(
            "loaded_at >= " ~ since ~ " - interval '"
            ~ (var('incremental_lookback_hours') | int) ~ " hours'"
        ) -%}
    {%- endif -%}
    {%- if filters -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ filters | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}


{#- True when this test belongs to an incremental model with a loaded_at column and the build
    tests changed rows only. -#}
{% macro tests_recent_rows_only() -%}
    {%- if var('data_tests_scope', 'all') != 'changed' or flags.FULL_REFRESH -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set parent = graph.nodes.get(model.attached_node) if model.attached_node else none -%}
    {#- Incremental models, and the staging views over the raw tables: raw rows arrive only
        through the ingest (which validates them) or an operator's correction, both stamped. -#}
    {{ return(
        parent is not none
        and (parent.config.materialized == 'incremental' or parent.fqn[1] == 'staging')
        and 'loaded_at' in parent.columns
    ) }}
{%- endmacro %}
