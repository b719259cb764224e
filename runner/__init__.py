"""tradebase runner: the Python side of the improvement engine (ingest, dbt orchestration, optimize, deploy)."""

__version__ = "0.1.0"
