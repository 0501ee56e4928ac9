"""What goes into the initramfs as files (the /init shim, udhcpc script, hooks for initramfs-tools
and dracut, systemd units): read by `ovl initramfs build` with importlib.resources."""
