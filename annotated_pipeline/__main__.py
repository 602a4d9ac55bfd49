"""`python -m annotated_pipeline SUBCOMMAND ...`: the same as the `annotated-pipeline` command."""

import sys

from .commands.cli import main

sys.exit(main())
