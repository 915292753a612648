"""`python -m hashdb.cli`: the same as the `hashdb` command."""

from hashdb.cli import main

main()
