"""`python -m pipeline.report`: runs pipeline.cli.report.main (the command's code lives there)."""

import sys

from pipeline.cli.report import main

__all__ = ['main']

if __name__ == "__main__":
    sys.exit(main())
