"""`python -m runner.cli` runs the same CLI as the `runner` console script."""

from runner.cli import main

main()
