import sys

from bear_core.cli import main

sys.exit(main())
