"""``python -m nosync`` (and ``torchrun -m nosync``) run the command line."""

import sys

from .cli import main

sys.exit(main())
