#!/bin/sh
# dracut cmdline hook: claim the root for ovl on root=ovl, or on any ovl= key with no root=.
if [ "$root" = ovl ] || { [ -z "$root" ] && getarg ovl= >/dev/null; }; then
    root=ovl
    rootok=1
    # Nothing for the initqueue to wait for: the agent waits for its own disks and network.
    echo '[ -e /run/ovl ] || mkdir -p /run/ovl' >"$hookdir/initqueue/finished/ovl.sh"
fi
