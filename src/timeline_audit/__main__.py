"""python -m timeline_audit."""

import sys

from timeline_audit.cli import main

sys.exit(main())
