"""ovl admin tools: authoring, lint/plan, keys, sealing, initramfs build, netinst server."""
