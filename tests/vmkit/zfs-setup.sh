#!/bin/sh
# rdinit= of the zfs VM test's first boot (in the zfs initramfs, see ovl.tools/vm/zfs.py):
# put the test root into a new pool, snapshot it, export the pool, power off.
#   disk 1 (/dev/vda1, a GPT partition made on the host): becomes the pool
#   disk 2 (/dev/vdb): the test root's squashfs
#   ovl.zfs=<pool>/<dataset>@<snapshot> on the command line: what to create, the same value the
#   later boots pass to the agent
# Prints "OVL-ZFS-SETUP done", or "OVL-ZFS-SETUP failed: <step>".
/usr/bin/busybox mount -t proc proc /proc
/usr/bin/busybox mount -t sysfs sysfs /sys
/usr/bin/busybox mount -t devtmpfs devtmpfs /dev
/usr/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

fail() {
    echo "OVL-ZFS-SETUP failed: $*"
    poweroff -f
}

snapshot=
for word in $(cat /proc/cmdline); do
    case $word in ovl.zfs=*) snapshot=${word#ovl.zfs=} ;; esac
done
dataset=${snapshot%@*}
pool=${dataset%%/*}
[ -n "$snapshot" ] && [ "$dataset" != "$snapshot" ] || fail "no ovl.zfs=pool/dataset@snapshot"

while read -r module; do
    modprobe "$module" || fail "modprobe $module"
done </etc/ovl/modules

tries=0
until [ -b /dev/vda1 ] && [ -b /dev/vdb ]; do
    [ $tries -lt 50 ] || fail "no /dev/vda1 and /dev/vdb"
    tries=$((tries + 1))
    sleep 0.1
done

# No cache file: the initramfs has no /etc/zfs, and the agent imports by scanning /dev.
zpool create -o cachefile=none -O mountpoint=none "$pool" /dev/vda1 || fail "zpool create"
zfs create -o mountpoint=legacy "$dataset" || fail "zfs create $dataset"
mkdir -p /mnt/image /mnt/root
mount -t squashfs -o ro /dev/vdb /mnt/image || fail "mount the test root"
mount -t zfs "$dataset" /mnt/root || fail "mount $dataset"
cp -a /mnt/image/. /mnt/root/ || fail "copy the test root"
umount /mnt/root
umount /mnt/image
zfs snapshot "$snapshot" || fail "zfs snapshot $snapshot"
zpool export "$pool" || fail "zpool export $pool"
echo "OVL-ZFS-SETUP done"
poweroff -f
