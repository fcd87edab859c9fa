"""`python -m rofolio` runs the command line."""

from rofolio.cli import main

main()
