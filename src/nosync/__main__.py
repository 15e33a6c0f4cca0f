"""``python -m nosync`` (and ``torchrun -m nosync``) run the command line."""

import sys

from nosync.cli import main

sys.exit(main())
