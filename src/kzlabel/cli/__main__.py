"""`python -m kzlabel.cli`."""

import sys

from . import main

sys.exit(main())
