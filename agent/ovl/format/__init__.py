"""The bundle engine: decode, validate and apply ovl bundles (spec: docs/FORMAT.md)."""
