"""The netinst server: serves published bundles, receives node deltas, bakes new versions."""
