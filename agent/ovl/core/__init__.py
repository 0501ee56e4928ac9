"""What every part of ovl shares: errors, running commands, file writes, facts, CLI plumbing."""
