"""Deletions in a layer, as tar carries them (the OCI image spec's forms) and as overlayfs
marks them on disk: `.wh.<name>` hides `name` of the layers below, `.wh..wh..opq` inside a
directory hides everything the layers below have in it."""

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
# overlayfs: a whiteout is a character device 0/0; an opaque directory carries this xattr.
OPAQUE_XATTR = "trusted.overlay.opaque"
