"""`python -m rofolio.oracle ...`: the oracle's commands before they are registered in `rofolio`."""

from rofolio.oracle.cli import oracle_group

oracle_group(prog_name="rofolio oracle")
