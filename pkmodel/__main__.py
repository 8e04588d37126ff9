"""`python -m pkmodel` runs the pkmodel command line."""

from pkmodel.cli import main

main()
