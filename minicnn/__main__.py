"""python -m minicnn: see minicnn/cli/."""

import sys

from .cli import main

sys.exit(main())
