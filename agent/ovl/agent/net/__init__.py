"""The initramfs network: `ip=`, `BOOTIF=` and `nameserver=` parsed (ipconfig), NICs and their
carrier (links), one udhcpc per NIC, first lease wins (dhcp), static addresses (static), and the
bring-up that ties them together within `ovl.timeout` (bringup)."""
