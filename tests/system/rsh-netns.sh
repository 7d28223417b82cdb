#!/usr/bin/env bash
# An "ssh" for Open MPI that launches into Linux network namespaces on this machine instead
# of other hosts, so that one machine can stand in for several (see tests/system/multihost.sh).
# Open MPI calls its rsh agent like ssh:  rsh-netns.sh [SSH-OPTIONS] HOST COMMAND...
# HOST (a name or address from the hostfile) is looked up in the map file named by
# RTNS_MAP, whose lines are "HOST NAMESPACE"; COMMAND runs as ssh would run it, joined by
# spaces and given to a shell, in that namespace:  ip netns exec NAMESPACE /bin/sh -c "$*",
# inside a private UTS namespace whose host name is NAMESPACE. Without that every "host"
# would share this machine's name, and Open MPI, which names its session directory
# (TMPDIR/ompi.HOSTNAME.UID/jf.JOBFAMILY) after the host, would put all daemons in one.
#   mpirun --mca plm_rsh_agent tests/system/rsh-netns.sh --hostfile HOSTFILE ...
# Needs root (ip netns exec). ssh options are accepted and ignored; those that take a value
# (-l USER, -p PORT, -o OPT, ...) have it skipped too.
set -u
die() { echo "rsh-netns: $*" >&2; exit 255; }   # 255: what ssh returns on its own errors
while [ $# -gt 0 ]; do
    case $1 in
    --) shift; break ;;
    -[bcDEeFIiJLlmOoPpQRSWw]) shift; [ $# -gt 0 ] && shift ;;   # option with a value
    -?*) shift ;;                                               # flag, or -oVALUE, -lUSER
    *) break ;;
    esac
done
[ $# -ge 2 ] || die "usage: rsh-netns.sh [ssh options] HOST COMMAND..."
host=${1#*@}                                                    # user@host -> host
shift
map=${RTNS_MAP:-}
[ -r "$map" ] || die "RTNS_MAP must name a readable 'HOST NAMESPACE' file (is '$map')"
ns=$(awk -v h="$host" '$1 == h { print $2; exit }' "$map")
[ -n "$ns" ] || die "host '$host' is not in $map"
# shellcheck disable=SC2016  # $0 and $1 are for the inner shell
exec ip netns exec "$ns" unshare --uts /bin/sh -c 'hostname "$0" && exec /bin/sh -c "$1"' "$ns" "$*"
