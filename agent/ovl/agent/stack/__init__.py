"""Assembling the new root at /sysroot: overlayfs, a btrfs snapshot, or a zfs clone."""
