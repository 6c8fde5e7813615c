"""`python -m pipeline.sample`: runs pipeline.cli.sample.main (the command's code lives there)."""

import sys

from pipeline.cli.sample import main

__all__ = ['main']

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
