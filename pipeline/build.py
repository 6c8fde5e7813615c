"""`python -m pipeline.build`: runs pipeline.cli.build.main (the command's code lives there)."""

import sys

from pipeline.cli.build import main

__all__ = ['main']

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
