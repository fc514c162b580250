"""``python -m coat ...`` (and ``accelerate launch -m coat ...``) runs the CLI."""

import sys

from coat.cli import main

sys.exit(main())
