"""Entry point PyInstaller freezes into /ovl/agent/ovl-agent: the agent's own CLI, nothing else."""

import sys

from agent.cli import main

sys.exit(main())
