"""`python -m pipeline.inspect`: runs pipeline.cli.inspect.main (the command's code lives there)."""

import sys

from pipeline.cli.inspect import main, run_cli

__all__ = ['main', 'run_cli']

if __name__ == "__main__":
    sys.exit(run_cli())
