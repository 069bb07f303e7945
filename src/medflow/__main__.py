"""``python -m medflow``: the CLI under the interpreter that runs it (used by the rules)."""

import sys

from medflow.cli import main

sys.exit(main())
