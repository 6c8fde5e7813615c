"""`python -m pipeline.download_yt8m`: runs pipeline.cli.download_yt8m.main (the command's code lives there)."""

import sys

from pipeline.cli.download_yt8m import main

__all__ = ['main']

if __name__ == "__main__":
    sys.exit(main())
