#!/bin/bash
# dracut module "ovl": the ovl agent assembles the root.
#   install: cp -r 90ovl /usr/lib/dracut/modules.d/; dracut --add ovl (plus "network" for ip=)
#   boot:    root=ovl and the ovl.* keys (docs/CMDLINE.md); any ovl= key implies root=ovl
# Environment (defaults in brackets):
#   OVL_AGENT_DIR  frozen agent, from `ovl initramfs freeze -o DIR` [/usr/lib/ovl/agent]
#   OVL_KEYS_DIR   the trust store, copied to /etc/ovl/keys [/etc/ovl/keys]
#   OVL_CMDLINE    defaults used when the kernel has no ovl keys [/etc/ovl/cmdline]

ovl_agent_dir() {
    echo "${OVL_AGENT_DIR:-/usr/lib/ovl/agent}"
}

check() {
    [[ -x "$(ovl_agent_dir)/ovl-agent" ]] || return 1
    # Only when asked for (dracut --add ovl): it takes over how the root is found.
    return 255
}

depends() {
    echo base
}

installkernel() {
    hostonly='' instmods overlay squashfs loop erofs btrfs vfat isofs
}

# System libraries the agent's ELF files need. The PyInstaller bootloader starts without
# LD_LIBRARY_PATH and re-executes itself with _internal on it, so it resolves against the
# system and everything in _internal against _internal first; what is in _internal ships there.
ovl_system_libraries() {
    local agent=$1 file
    find "$agent" -type f | sort | while read -r file; do
        [[ "$(head -c 4 "$file" | tail -c 3)" == ELF ]] || continue
        if [[ "$file" == "$agent/ovl-agent" ]]; then
            ldd "$file"
        else
            LD_LIBRARY_PATH="$agent/_internal" ldd "$file"
        fi 2>/dev/null | sed -n -e 's/.*=> \(\/[^ ]*\) .*/\1/p' -e 's/^[[:blank:]]*\(\/[^ ]*\) (.*/\1/p'
    done | sort -u | grep -v "^$agent/"
}

install() {
    local agent keys defaults library key
    agent=$(ovl_agent_dir)
    keys=${OVL_KEYS_DIR:-/etc/ovl/keys}
    defaults=${OVL_CMDLINE:-/etc/ovl/cmdline}

    mkdir -p "$initdir/ovl" "$initdir/etc/ovl/keys"
    cp -a "$agent" "$initdir/ovl/agent"
    for library in $(ovl_system_libraries "$agent"); do
        inst_library "$library"
    done
    # The trust store: root *.pub keys, revoked, revoked.minisig (docs/TRUST.md); not its README.
    for key in "$keys"/*; do
        [[ -f "$key" && "$key" != *.md ]] && inst_simple "$key" "/etc/ovl/keys/${key##*/}"
    done
    [[ -f "$defaults" ]] && inst_simple "$defaults" /etc/ovl/cmdline
    inst_simple /etc/ssl/certs/ca-certificates.crt
    inst_multiple mount umount losetup blkid modprobe sed
    inst_multiple -o btrfs mkfs.btrfs

    inst_hook cmdline 90 "$moddir/parse-ovl.sh"
    inst_hook mount 90 "$moddir/mount-ovl.sh"
}
