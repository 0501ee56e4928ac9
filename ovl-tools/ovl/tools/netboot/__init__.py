"""Netboot: iPXE scripts per machine, chosen by favors, served beside the bundles
(docs/NETBOOT.md)."""
