"""ovl boot agent: everything that runs inside the initramfs (and the delta shipper).

Nothing happens at import time; costly imports are done lazily where they are used.
"""
