import sys

from ovl.agent.cli import main

sys.exit(main())
