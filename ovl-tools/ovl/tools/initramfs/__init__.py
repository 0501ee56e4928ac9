"""Build the ovl initramfs: config, kernel modules, ELF closure, frozen agent, cpio, assembly."""
