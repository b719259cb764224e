{#-
    Net P&L of a closed trade, the one definition every model uses (metrics.md "Trade metrics"):
    (exit - entry) * quantity for long, (entry - exit) * quantity for short, minus fees.
-#}
{% macro trade_net_pnl(side, entry_price, exit_price, quantity, fees) -%}
    (case
        when {{ side }} = 'long' then ({{ exit_price }} - {{ entry_price }}) * {{ quantity }}
        when {{ side }} = 'short' then ({{ entry_price }} - {{ exit_price }}) * {{ quantity }}
    end - {{ fees }})
{%- endmacro %}


{#- Trade return: net P&L over the capital the trade committed, entry_price * quantity. -#}
{% macro trade_return(net_pnl, entry_price, quantity) -%}
    ({{ net_pnl }} / nullif({{ entry_price }} * {{ quantity }}, 0))
{%- endmacro %}
