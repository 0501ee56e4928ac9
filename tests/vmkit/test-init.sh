#!/bin/sh
# /sbin/init of ovl's test root (or a service on a real Debian root): describe the booted
# system as "OVL-TEST ..." console lines, then power off. VM tests read these lines; nothing
# here may need more than busybox or Debian's minbase.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
[ -e /proc/mounts ] || mount -t proc proc /proc
[ -e /sys/class ] || mount -t sysfs sysfs /sys

say() { echo "OVL-TEST $*"; }

say booted
for nic in /sys/class/net/*; do
    [ "${nic##*/}" = lo ] || mac="$(cat "$nic/address")"
done
say "facts mac=$mac uuid=$(cat /sys/class/dmi/id/product_uuid) release=$(uname -r)"
say "pid1 $(cat /proc/1/comm)"
say "mounts $(awk '$2 == "/" { root = $1 " " $3 } END { print root }' /proc/mounts)"

while read -r probe; do
    if [ -f "$probe" ]; then
        say "file $probe=$(head -c 200 "$probe" | tr '\n' ' ' | sed 's/ *$//')"
    else
        say "file $probe=<missing>"
    fi
done < /etc/ovl-probe

# A change made in this boot: a later boot sees it only when the upper persists.
before=absent; after=absent
[ -e /var/ovl-test-scratch ] && before=present
echo "written by an earlier boot" > /var/ovl-test-scratch
[ -e /var/ovl-test-scratch ] && after=present
say "scratch before=$before after=$after"

if [ -f /run/ovl/report.json ]; then
    say "report $(tr -d '\n' < /run/ovl/report.json)"
else
    say "report none"
fi
say done
sync
poweroff -f
