"""`python -m bear_core`: the command line (`bear_core.cli`). When a command returns, everything
it wrote is complete and closed (atomic writes), so the process ends there, without the
interpreter's teardown of torch and its libraries: that takes a second or more on a busy
machine, and a training job's new version waits for its trainer to exit."""

import os
import sys

from bear_core.cli import main

code = main()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
