"""DEPLOY: staging, smoke tests, the sequential A/B ramp 10% → 50% → 100%, rollback, routing
and the paper-trading simulator that closes the loop."""
