"""`python -m jobhook.cli`: the same as the `jobhook` command."""

from jobhook.cli.main import main

main()
