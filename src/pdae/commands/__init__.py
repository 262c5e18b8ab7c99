"""Sub-commands of the `pdae` command line, grouped by what they work on."""
