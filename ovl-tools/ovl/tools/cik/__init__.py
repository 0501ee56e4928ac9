"""The CIK: a bootable rescue/provisioning stick holding bundles, root images and node keys
for many machines (docs/CIK.md)."""
