"""`python -m pipeline.doctor`: runs pipeline.cli.doctor.main (the command's code lives there)."""

import os
import sys

from pipeline.cli.doctor import main

__all__ = ['main']

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
