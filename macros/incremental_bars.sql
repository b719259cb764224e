{#-
    Incremental builds of the bar models (docs/benchmarks.md, "Scale"). A model keeps, per bar
    (or per day), the raw loaded_at it was computed from. Before a build it compares a digest of
    the raw bars with a digest of its own rows: the number of bars per (symbol, loaded_at) for a
    model with one row per bar, the number of bars and the newest loaded_at per (symbol, day) for
    a daily model. A new bar, a late one or a corrected one (the ingest stamps new rows; a
    correction sets loaded_at to its own time) changes its symbol's digest, whatever its date;
    no lookback is needed and nothing is recomputed when no bar arrived. A symbol is recomputed
    from its first changed bar (or day) to its last, reading the bars before it that the
    trailing windows need. The bounds are read once per model and inlined as literals, so the
    scans prune on them.
-#}

{#- {symbol: first changed bar_at} of a model with one row per bar (`grain='bar'`) or
    {symbol: first changed bar_date} of one with one row per symbol and day (`grain='day'`),
    against `upstream`: stg_raw__bars, or for a model downstream of another bar model its parent
    (one row per bar with the raw loaded_at, already built in this run); none when the model is
    built from scratch (every row is recomputed). -#}
{% macro bars_changed(upstream, grain='bar') -%}
    {%- if not (execute and is_incremental()) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set own_columns = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {%- if 'loaded_at' not in own_columns -%}
        {#- A table built before the models kept loaded_at: rebuilt once. -#}
        {{ return(none) }}
    {%- endif -%}
    {%- set query -%}
        {%- if grain == 'bar' %}
        with raw_digest as (
            select symbol, loaded_at, count(*) as n_bars, min(bar_at) as first_at
            from {{ upstream }}
            group by symbol, loaded_at
        ),
        own_digest as (
            select symbol, loaded_at, count(*) as n_bars, min(bar_at) as first_at
            from {{ this }}
            group by symbol, loaded_at
        )
        {%- else %}
        with raw_digest as (
            select symbol, bar_date, count(*) as n_bars, max(loaded_at) as loaded_at, bar_date as first_at
            from {{ upstream }}
            group by symbol, bar_date
        ),
        own_digest as (
            select symbol, bar_date, n_bars, loaded_at, bar_date as first_at
            from {{ this }}
        )
        {%- endif %}
        ,
        raw_changed_groups as (
            select raw_digest.*
            from raw_digest
            left join own_digest
                on {{ tradebase._bar_digest_match(grain) }}
            where own_digest.n_bars is null
        ),
        own_changed_groups as (
            select own_digest.*
            from own_digest
            left join raw_digest
                on {{ tradebase._bar_digest_match(grain) }}
            where raw_digest.n_bars is null
        ),
        {%- if grain == 'bar' %}
        {#- A group that gained or lost bars (new, late or corrected ones) counts from its first
            bar the other side does not hold as it is, not from the group's first bar. #}
        raw_changed as (
            {{ tradebase._bars_not_in('raw_changed_groups', upstream, this) }}
        ),
        own_changed as (
            {{ tradebase._bars_not_in('own_changed_groups', this, upstream) }}
        )
        {%- else %}
        raw_changed as (
            select symbol, first_at from raw_changed_groups
        ),
        own_changed as (
            select symbol, first_at from own_changed_groups
        )
        {%- endif %}
        select symbol, cast(min(first_at) as varchar(32))
        from (
            select symbol, first_at from raw_changed
            union all
            select symbol, first_at from own_changed
        ) as changed
        group by symbol
    {%- endset -%}
    {%- set changed = {} -%}
    {%- for row in run_query(query).rows -%}
        {%- do changed.update({row[0]: row[1]}) -%}
    {%- endfor -%}
    {{ return(changed) }}
{%- endmacro %}


{#- The bars of `groups` (symbol, loaded_at) in relation `side` that `other` does not hold with
    the same loaded_at, as (symbol, first_at). -#}
{% macro _bars_not_in(groups, side, other) -%}
    select this_side.symbol, this_side.bar_at as first_at
    from {{ side }} as this_side
    inner join {{ groups }}
        on this_side.symbol = {{ groups }}.symbol and this_side.loaded_at = {{ groups }}.loaded_at
    where not exists (
        select 1 from {{ other }} as other_side
        where
            other_side.symbol = this_side.symbol
            and other_side.bar_at = this_side.bar_at
            and other_side.loaded_at = this_side.loaded_at
    )
{%- endmacro %}


{#- Two digest rows describe the same bars: same key, same count (and same newest loaded_at). -#}
{% macro _bar_digest_match(grain) -%}
    raw_digest.symbol = own_digest.symbol
    and raw_digest.n_bars = own_digest.n_bars
    and raw_digest.loaded_at = own_digest.loaded_at
    {%- if grain != 'bar' %}
    and raw_digest.bar_date = own_digest.bar_date
    {%- endif %}
{%- endmacro %}


{#- {symbol: bar_at of the n_back-th bar before its first changed bar} (that bar itself when
    n_back is 0 or no bar precedes it) in `upstream` (one row per bar): where a recomputation
    must start reading, or writing when the rows before the first changed bar look ahead
    (labels). none stays none. -#}
{% macro bars_before(changed, n_back, upstream, column='bar_at') -%}
    {%- if changed is none or changed | length == 0 or (n_back | int) == 0 -%}
        {{ return(changed) }}
    {%- endif -%}
    {%- set query -%}
        select
            changed.symbol,
            cast(coalesce((
                select min(earlier.{{ column }})
                from (
                    select bars.{{ column }}
                    from {{ upstream }} as bars
                    where bars.symbol = changed.symbol and bars.{{ column }} < changed.first_at
                    order by bars.{{ column }} desc
                    limit {{ n_back | int }}
                ) as earlier
            ), changed.first_at) as varchar(32))
        from ({{ tradebase._bar_bounds_values(changed, 'date' if column == 'bar_date' else 'timestamp') }}) as changed
    {%- endset -%}
    {%- set bounds = {} -%}
    {%- for row in run_query(query).rows -%}
        {%- do bounds.update({row[0]: row[1]}) -%}
    {%- endfor -%}
    {{ return(bounds) }}
{%- endmacro %}


{#- The bounds as a relation (symbol, first_at timestamp) for a query. -#}
{% macro _bar_bounds_values(bounds, cast_to='timestamp') -%}
    {%- for symbol, first_at in bounds.items() %}
    {% if not loop.first %}union all {% endif -%}
    select {{ tradebase._sql_string(symbol) }} as symbol, cast({{ tradebase._sql_string(first_at) }} as {{ cast_to }}) as first_at
    {%- endfor %}
{%- endmacro %}


{#- A predicate selecting, per symbol, the rows at or after its bound on `column` (a timestamp,
    or a date with `cast_to='date'`): true when bounds is none (a full build), false when no
    symbol changed. -#}
{% macro bars_from(bounds, column='bar_at', cast_to='timestamp') -%}
    {%- if bounds is none -%}
        true
    {%- elif bounds | length == 0 -%}
        false
    {%- else -%}
        (
        {%- for symbol, first_at in bounds.items() %}
            {% if not loop.first %}or {% endif -%}
            (symbol = {{ tradebase._sql_string(symbol) }} and {{ column }} >= cast({{ tradebase._sql_string(first_at) }} as {{ cast_to }}))
        {%- endfor %}
        )
    {%- endif -%}
{%- endmacro %}


{% macro _sql_string(value) -%}
    '{{ (value | string).replace("'", "''") }}'
{%- endmacro %}


{#-
    The bar models' incremental strategy (incremental_strategy='symbol_range', unique_key
    [symbol, <time column>]): for each symbol in the new rows, delete every row of it from the
    first new row's time on, then insert the new rows. Unlike delete+insert on the key, a bar
    deleted from the raw table (or moved) loses its row too, as long as a bar of its symbol
    before it remains: the models write from at least one bar before the first changed one.
-#}
{% macro get_incremental_symbol_range_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set temp = arg_dict['temp_relation'] -%}
    {%- set range_column = arg_dict['unique_key'][1] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ target }}
    using (
        select symbol, min({{ range_column }}) as first_at
        from {{ temp }}
        group by symbol
    ) as changed
    where
        {{ target.identifier }}.symbol = changed.symbol
        and {{ target.identifier }}.{{ range_column }} >= changed.first_at;

    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ temp }}
{%- endmacro %}


{#- A pre-hook of the bar models: in an incremental build, the rows of symbols no longer in
    `upstream` at all (every bar of theirs deleted), which symbol_range cannot reach. An anti-join
    (PostgreSQL looks each symbol up in the index on (symbol, bar_at)), not `not in`: a subquery
    too big to hash makes `not in` a nested scan. -#}
{% macro delete_vanished_symbols(upstream) -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where not exists (
            select 1 from {{ upstream }} as upstream_bars
            where upstream_bars.symbol = {{ this.identifier }}.symbol
        )
    {%- endif -%}
{%- endmacro %}
