"""`python -m pkmodel.cli` runs the pkmodel command line (used by torchrun and tests)."""

from pkmodel.cli import main

main()
