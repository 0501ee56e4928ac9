#!/bin/sh
# dracut mount hook: run the ovl agent, which assembles the root on $NEWROOT and writes the
# hand-over file (docs/CMDLINE.md); dracut then moves /run etc. and switches root itself.
[ "$root" = ovl ] || return 0
ismounted "$NEWROOT" && return 0

# dracut's network module brings the network up (ip=): the agent leaves ip= to it.
ovl_run_agent() {
    /ovl/agent/ovl-agent boot --external-network --sysroot "$NEWROOT" "$@"
    ovl_status=$?
    ROOT= INIT= BREAK= EMERGENCY= EMERGENCY_ACTION= EMERGENCY_DELAY= RESCUE=
    # Values are shell-quoted by the agent; sourcing the file is the parser.
    if [ -f /run/ovl/handover ]; then . /run/ovl/handover; fi
}

mkdir -p /run/ovl
# ovl.break=pre-agent is this hook's own; the agent ignores it.
if [ "$(getarg ovl.break=)" = pre-agent ]; then
    emergency_shell -n ovl "ovl.break=pre-agent: shell before the agent runs"
fi
[ -f /etc/ssl/certs/ca-certificates.crt ] && export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

ovl_run_agent
if [ -n "$BREAK" ]; then
    emergency_shell -n ovl "ovl.break: agent stopped before $BREAK (see /run/ovl)"
    ovl_run_agent --no-break
fi
if [ -z "$ROOT" ]; then
    reason=${EMERGENCY:-agent exited with status $ovl_status and no hand-over}
    [ -n "$RESCUE" ] && reason="rescue: $RESCUE (disks are read-only)"
    warn "ovl: emergency: $reason"
    # ovl.emergency=reboot[:SECONDS]|poweroff: an unattended machine does not wait in a shell.
    case $EMERGENCY_ACTION in
        reboot)
            warn "ovl: rebooting in ${EMERGENCY_DELAY:-10} s (ovl.emergency)"
            sleep "${EMERGENCY_DELAY:-10}"
            reboot -f
            ;;
        poweroff) poweroff -f ;;
    esac
    emergency_shell -n ovl
elif [ "$ROOT" != "$NEWROOT" ]; then
    mount --move "$ROOT" "$NEWROOT"
fi
