"""`python -m snnctl` is the same as the `snnctl` command."""

from snnctl.cli import main

main()
