"""Shipping a machine's changes: the overlay upper dir packed as a delta and sent home."""
