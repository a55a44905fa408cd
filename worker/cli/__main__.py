"""`python -m worker.cli`: the same as the `newsletter` command."""

from . import main

main()
