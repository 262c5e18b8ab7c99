"""`python -m pdae` is the `pdae` command."""

from pdae.cli import main

main()
