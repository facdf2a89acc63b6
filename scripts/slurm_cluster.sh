#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, CPU only, for the tests and CI (docs/cluster.md):
#   scripts/slurm_cluster.sh start DIR   # writes DIR/slurm.conf, starts munged, slurmctld, slurmd
#   scripts/slurm_cluster.sh stop DIR    # stops the three daemons started with DIR
#   scripts/slurm_cluster.sh install     # installs Debian's slurm-wlm and munge if missing (root)
# After `start`, export SLURM_CONF=DIR/slurm.conf to use srun, sbatch, scontrol, scancel. The
# daemons run as the calling user (root in CI), without systemd; everything they write (state,
# logs, sockets, the munge key) stays in DIR. Partition `debug`; requeued jobs may start again
# 5 s after a requeue (`cred_expire`, Slurm's requeue delay).
set -euo pipefail
USAGE="usage: $0 start DIR | stop DIR | install"
die() { echo "$(basename "$0"): $1" >&2; exit 1; }

install_packages() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
    [ "$(id -u)" -eq 0 ] || die "slurm-wlm and munge are not installed, and installing them needs root"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null \
        || die "apt-get could not install slurm-wlm and munge"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds, or fail naming DESCRIPTION.
wait_for() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "$what did not come up (logs in $DIR)"
        sleep 0.5
    done
}

start() {
    install_packages
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge"
    chmod 700 "$DIR" "$DIR/munge"
    [ -s "$DIR/munge/munge.key" ] || { head -c 1024 /dev/urandom > "$DIR/munge/munge.key"; }
    chmod 600 "$DIR/munge/munge.key"
    munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
        --log-file="$DIR/munged.log" --pid-file="$DIR/munged.pid" \
        --seed-file="$DIR/munge/munged.seed" 2>>"$DIR/munged.log" \
        || die "munged did not start (see $DIR/munged.log)"
    local host cpus memory
    host=$(hostname -s)
    cpus=${SLURM_CLUSTER_CPUS:-8}  # more than the machine's: tests run steps side by side
    memory=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024))
    cat > "$DIR/slurm.conf" <<CONF
ClusterName=rmtmm
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=60
SchedulerParameters=sched_interval=2
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
    export SLURM_CONF="$DIR/slurm.conf"
    slurmctld -f "$SLURM_CONF" || die "slurmctld did not start (see $DIR/slurmctld.log)"
    slurmd -f "$SLURM_CONF" || die "slurmd did not start (see $DIR/slurmd.log)"
    wait_for 60 "the node" bash -c "sinfo -h -o %t | grep -qx idle"
}

stop_daemon() {  # NAME: the daemon whose pid file DIR holds, and wait until it is gone
    local pidfile="$DIR/$1.pid" pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    if [ -s "$DIR/slurm.conf" ]; then  # cancel the jobs first: slurmd's steps end with them
        SLURM_CONF="$DIR/slurm.conf" scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        sleep 1
    fi
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
}

case "${1:-}" in
    start|stop)
        [ $# -eq 2 ] || { echo "$(basename "$0"): $1 needs DIR" >&2; echo "$USAGE" >&2; exit 2; }
        mkdir -p "$2"
        DIR=$(cd "$2" && pwd)
        "$1" ;;
    install) install_packages ;;
    *) echo "$(basename "$0"): unknown or missing command '${1:-}'" >&2; echo "$USAGE" >&2; exit 2 ;;
esac
