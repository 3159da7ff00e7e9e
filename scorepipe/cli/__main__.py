"""``python -m scorepipe.cli``: the same as the ``scorepipe`` command."""

import sys

from scorepipe.cli import main

sys.exit(main())
