"""``python -m cmpipe``: the ``cmpipe`` command without an installed console script."""

import sys

from cmpipe.cli import main

sys.exit(main())
