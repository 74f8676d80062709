#!/usr/bin/env bash
# A real two-node SLURM 22.05 cluster on this one Debian 12 machine, for
# integration tests and CI.
#
#   scripts/slurm-cluster.sh up      install (if needed) and start everything; idempotent
#   scripts/slurm-cluster.sh down    stop everything this script started; idempotent
#   scripts/slurm-cluster.sh status  show daemons and sinfo; exit 0 only if usable
#   scripts/slurm-cluster.sh stop DAEMON       fault tests: stop slurmctld or slurmdbd (`up` restarts it)
#   scripts/slurm-cluster.sh fail-node NODE    fault tests: NODE dies (SIGKILL of its slurmd and of every
#                                              process of the jobs running on it); `up` brings it back
#
# Layout: munged, MariaDB, slurmdbd, slurmctld and two slurmd (node1, node2),
# all started directly (no systemd needed), all as root.  Both nodes live on
# this host: they share NodeHostname and are told apart by port and `slurmd -N`.
# Pid files of everything started here: /run/slurm-cluster; logs: /var/log/slurm-cluster.
set -euo pipefail

CLUSTER_NAME=orch
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

CONF_DIR=/etc/slurm
RUN_DIR=/run/slurm-cluster          # pid files: `down` stops exactly these
LOG_DIR=/var/log/slurm-cluster
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd         # one subdirectory per node (%n)

NODES=(node1 node2)
NODE_CPUS=2                         # tests use --cpus-per-task up to 2
DB_NAME=slurm_acct_db
DB_USER=slurm
# Test-only credential: MariaDB is reached over its local socket only.
DB_PASS=slurm-cluster-test
TIMEOUT=${SLURM_CLUSTER_TIMEOUT:-120}   # seconds to wait for any one step

log() { printf '[slurm-cluster] %s\n' "$*" >&2; }

# Tail every log we know of, so a CI failure is diagnosable from its output.
show_logs() {
    local f
    for f in "$LOG_DIR"/*.log /var/log/munge/munged.log; do
        [[ -s $f ]] || continue
        printf '\n===== tail -n 30 %s =====\n' "$f" >&2
        tail -n 30 "$f" >&2 || true
    done
}

die() {
    log "ERROR: $*"
    show_logs
    log "logs are in $LOG_DIR (munge: /var/log/munge)"
    exit 1
}

# wait_for DESCRIPTION COMMAND...: retry COMMAND until it succeeds or TIMEOUT passes.
wait_for() {
    local what=$1; shift
    local deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${TIMEOUT}s waiting for $what"
        sleep 0.5
    done
}

# ---------------------------------------------------------------- processes

# Where each daemon's pid file is.  munged and mariadbd run as their own users
# and write theirs in their own run dirs; for those, $RUN_DIR/NAME.started marks
# that this script started them (so `down` leaves a system-managed one alone).
pidfile() {
    case $1 in
        munged) echo /run/munge/munged.pid ;;
        mariadb) echo /run/mysqld/mysqld.pid ;;
        *) echo "$RUN_DIR/$1.pid" ;;
    esac
}

# pid_of NAME COMM: pid from NAME's pid file if that process is alive and is
# really COMM (guards against a stale pid file whose pid was reused).
pid_of() {
    local pidfile pid
    pidfile=$(pidfile "$1")
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] || return 1
    echo "$pid"
}

# stop NAME COMM: TERM the process of NAME's pid file, KILL it after 15 s.
stop() {
    local pid i
    case $1 in
        munged | mariadb) [[ -e $RUN_DIR/$1.started ]] || return 0 ;;
    esac
    if pid=$(pid_of "$1" "$2"); then
        log "stopping $1 (pid $pid)"
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 30; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$1 did not stop in 15 s, killing it"
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$RUN_DIR/$1.pid" "$RUN_DIR/$1.started"
}

# launch CMD...: exec CMD with every inherited fd above 2 closed.  Not all of
# these daemons close fds they inherit, and one holding the caller's pipe open
# (e.g. CI's output capture) would keep that caller waiting forever.
launch() {
    local fd
    for fd in "/proc/$BASHPID/fd/"*; do
        fd=${fd##*/}
        ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
    done
    exec "$@"
}

munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
mariadb_ok() { mariadb-admin --protocol=socket ping >/dev/null 2>&1; }
slurmdbd_ok() { sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }
slurmctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

# ---------------------------------------------------------------- install

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]}"
    # Keep dpkg from starting the services itself (with default configs, or via
    # a systemd that may not be there): this script starts them below.  An
    # existing policy-rc.d (as in Docker images) is left alone.
    local policy=/usr/sbin/policy-rc.d added_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Recommends would add ~60 packages (HDF5, IPMI, ROCm... plugins) nobody uses here.
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" || {
        [[ -n $added_policy ]] && rm -f "$policy"
        die "apt-get install failed"
    }
    [[ -n $added_policy ]] && rm -f "$policy"
    return 0
}

# ---------------------------------------------------------------- munge

start_munge() {
    local key=/etc/munge/munge.key
    if [[ ! -s $key ]]; then
        log "creating munge key"
        install -d -o munge -g munge -m 700 /etc/munge
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$key"
    chmod 400 "$key"
    munge_ok && return 0
    # /run/munge is normally made by systemd-tmpfiles.
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
    log "starting munged"
    touch "$RUN_DIR/munged.started"
    (launch runuser -u munge -- munged) </dev/null >/dev/null 2>&1 || die "munged failed to start"
    wait_for "munged" munge_ok
}

# ---------------------------------------------------------------- MariaDB

start_mariadb() {
    if ! mariadb_ok; then
        install -d -o mysql -g mysql -m 755 /run/mysqld
        [[ -d /var/lib/mysql/mysql ]] || {
            log "initialising MariaDB data directory"
            mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$LOG_DIR/mariadb-install.log" 2>&1 ||
                die "mariadb-install-db failed"
        }
        log "starting MariaDB"
        touch "$RUN_DIR/mariadb.started"
        # mariadbd runs as mysql: its log must be writable by it.
        touch "$LOG_DIR/mariadb.log"
        chown mysql:mysql "$LOG_DIR/mariadb.log"
        # mariadbd does not daemonise: detach it (setsid, no inherited fds)
        # so it outlives this script and does not hold a CI pipe open.
        (launch setsid mariadbd --user=mysql --pid-file="$(pidfile mariadb)" \
            --log-error="$LOG_DIR/mariadb.log" --bind-address=127.0.0.1 --innodb-lock-wait-timeout=900 \
            ) </dev/null >/dev/null 2>&1 &
        wait_for "MariaDB" mariadb_ok
    fi
    # Idempotent; root connects through the socket (unix_socket auth).
    mariadb --protocol=socket <<SQL || die "could not create database $DB_NAME / user $DB_USER"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'localhost';
SQL
}

# ---------------------------------------------------------------- config

# write_if_changed FILE MODE: write stdin to FILE; return 0 if content changed.
write_if_changed() {
    local file=$1 mode=$2 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$file"
    return 0
}

SLURM_CONF_CHANGED=
SLURMDBD_CONF_CHANGED=

write_configs() {
    local host mem_mb
    host=$(hostname -s)
    # Each node gets at most 8000 MB; both report the whole machine's memory
    # to slurmctld, so any value up to that is accepted.
    mem_mb=$(awk '/^MemTotal:/ {m = int($2 / 1024) - 1024; print (m < 8000 ? m : 8000)}' /proc/meminfo)

    install -d -m 755 "$CONF_DIR"

    # slurmdbd.conf holds the DB password: 600, owned by its SlurmUser (root).
    if write_if_changed "$CONF_DIR/slurmdbd.conf" 600 <<EOF; then SLURMDBD_CONF_CHANGED=1; fi
# Written by scripts/slurm-cluster.sh -- edits are overwritten.
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=$RUN_DIR/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=$DB_NAME
StorageUser=$DB_USER
StoragePass=$DB_PASS
EOF

    if write_if_changed "$CONF_DIR/slurm.conf" 644 <<EOF; then SLURM_CONF_CHANGED=1; fi
# Written by scripts/slurm-cluster.sh -- edits are overwritten.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=6817
SlurmUser=root
AuthType=auth/munge
# A requeued job may only start again after the credential lifetime (default
# 120 s): keep it short so requeue tests are quick.
AuthInfo=cred_expire=10
MpiDefault=none
MailProg=/bin/true

StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR/%n
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log

# No cgroups needed (none usable in containers).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none

# Accounting through slurmdbd, so sacct sees every job.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobCompType=jobcomp/none

SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default every job would ask for a whole node's memory.
DefMemPerCPU=256
# Take the node sizes below as given, whatever this machine really has.
SlurmdParameters=config_overrides

# Fast turnaround for tests.
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2,sched_min_interval=0
MessageTimeout=10
KillWait=5
OverTimeLimit=0
InactiveLimit=0
MinJobAge=300
CompleteWait=0
ReturnToService=2
# a dead node is noticed (DOWN, its jobs NODE_FAIL) within 20-30 s: the fault tests wait for it
SlurmdTimeout=20
SlurmctldTimeout=120
MaxArraySize=10001
MaxJobCount=100000
JobRequeue=1
EnforcePartLimits=ALL

NodeName=node[1-2] NodeHostname=$host NodeAddr=127.0.0.1 Port=17001-17002 CPUs=$NODE_CPUS RealMemory=$mem_mb State=UNKNOWN
# FORCE:4 lets up to 4 jobs share a core, so many small test jobs run at once
# on 2x2 CPUs (memory is still accounted per job).
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
}

# ---------------------------------------------------------------- slurm daemons

start_slurmdbd() {
    [[ -n $SLURMDBD_CONF_CHANGED ]] && stop slurmdbd slurmdbd
    if ! pid_of slurmdbd slurmdbd >/dev/null; then
        log "starting slurmdbd"
        (launch slurmdbd) </dev/null >>"$LOG_DIR/slurmdbd.log" 2>&1 || die "slurmdbd failed to start"
    fi
    # First start creates the tables, which takes a few seconds.
    wait_for "slurmdbd" slurmdbd_ok
    if [[ -z $(sacctmgr -n -P list cluster "$CLUSTER_NAME" format=cluster 2>/dev/null) ]]; then
        log "registering cluster $CLUSTER_NAME in accounting"
        sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null || die "sacctmgr add cluster failed"
    fi
}

start_slurmctld() {
    if [[ -n $SLURM_CONF_CHANGED ]]; then
        # Nodes and controller must agree on slurm.conf: restart them all.
        local n
        for n in "${NODES[@]}"; do stop "slurmd-$n" slurmd; done
        stop slurmctld slurmctld
    fi
    if ! pid_of slurmctld slurmctld >/dev/null; then
        log "starting slurmctld"
        (launch slurmctld) </dev/null >>"$LOG_DIR/slurmctld.log" 2>&1 || die "slurmctld failed to start"
    fi
    wait_for "slurmctld" slurmctld_ok
}

start_slurmds() {
    local n
    for n in "${NODES[@]}"; do
        install -d -m 755 "$SPOOL_DIR/$n"
        if ! pid_of "slurmd-$n" slurmd >/dev/null; then
            log "starting slurmd -N $n"
            (launch slurmd -N "$n") </dev/null >>"$LOG_DIR/slurmd-$n.log" 2>&1 || die "slurmd -N $n failed to start"
        fi
    done
}

# Node states that can run jobs (sinfo %t, short form).
nodes_usable() {
    local states
    states=$(sinfo -h -N -p debug -o '%N %t' 2>/dev/null | sort -u) || return 1
    [[ $(grep -cE '^node[12] (idle|mix|alloc|comp)$' <<<"$states") == 2 ]]
}

wait_for_nodes() {
    local deadline=$((SECONDS + TIMEOUT)) resumed=
    until nodes_usable; do
        # A node left down/drained by an earlier run (e.g. killed slurmd) does
        # not come back by itself once its reason is set: resume it once.
        if [[ -z $resumed ]] && sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(down|drain|drng)$'; then
            sleep 2
            if sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(down|drain|drng)$'; then
                log "resuming down/drained nodes"
                scontrol update nodename=node[1-2] state=resume 2>/dev/null || true
                resumed=1
            fi
        fi
        if ((SECONDS >= deadline)); then
            sinfo -N -l >&2 || true
            die "timed out after ${TIMEOUT}s waiting for node1 and node2 to be idle"
        fi
        sleep 0.5
    done
}

# Run a 2-node step and check accounting recorded it.
smoke_check() {
    local out err jobid state
    err=$(mktemp)
    # srun's own messages ("queued and waiting for resources") go to stderr.
    # shellcheck disable=SC2016 # expanded by the job's shell
    out=$(timeout 60 srun -N2 --ntasks-per-node=1 --mem=16M -t 1 -J slurm-cluster-smoke \
        bash -c 'echo "$SLURM_JOB_ID $SLURMD_NODENAME"' 2>"$err") ||
        die "smoke test srun failed: $out $(cat "$err"; rm -f "$err")"
    rm -f "$err"
    [[ $(awk '{print $2}' <<<"$out" | sort | tr '\n' ' ') == "node1 node2 " ]] ||
        die "smoke test: expected output from node1 and node2, got: $out"
    jobid=$(awk 'NR == 1 {print $1}' <<<"$out")
    # slurmctld sends the job's end to slurmdbd asynchronously: poll for it.
    local deadline=$((SECONDS + 30))
    until state=$(sacct -j "$jobid" -X -n -P -o State 2>/dev/null) && [[ $state == COMPLETED ]]; do
        ((SECONDS < deadline)) || die "smoke test: sacct shows job $jobid as '${state:-nothing}', not COMPLETED"
        sleep 0.5
    done
    log "smoke test ok (job $jobid ran on node1+node2, sacct: $state)"
}

# ---------------------------------------------------------------- commands

cmd_up() {
    local start=$SECONDS
    install_packages
    install -d -m 755 "$RUN_DIR" "$LOG_DIR" "$SPOOL_DIR"
    install -d -m 700 "$STATE_DIR"
    start_munge
    start_mariadb
    write_configs
    start_slurmdbd
    start_slurmctld
    start_slurmds
    wait_for_nodes
    smoke_check
    log "cluster '$CLUSTER_NAME' is up ($((SECONDS - start))s); logs in $LOG_DIR"
}

cmd_down() {
    local n
    # Cancel jobs first so no slurmstepd/job processes outlive their slurmd.
    if slurmctld_ok; then
        local jobs
        jobs=$(squeue -h -o %A 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            log "cancelling $(wc -w <<<"$jobs") job(s)"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            local deadline=$((SECONDS + 15))
            while [[ -n $(squeue -h -o %A 2>/dev/null) ]] && ((SECONDS < deadline)); do sleep 0.5; done
        fi
    fi
    # Both slurmds at once: each takes a few seconds to shut down.
    for n in "${NODES[@]}"; do stop "slurmd-$n" slurmd & done
    wait
    stop slurmctld slurmctld
    stop slurmdbd slurmdbd
    stop mariadb mariadbd
    stop munged munged
    log "cluster stopped"
}

cmd_stop() {
    case ${1:-} in
        slurmctld | slurmdbd) stop "$1" "$1" ;;
        *) echo "usage: $0 stop slurmctld|slurmdbd" >&2; exit 2 ;;
    esac
}

# descendants PID: PID and every process below it.
descendants() {
    local child
    echo "$1"
    for child in $(ps -o pid= --ppid "$1"); do descendants "$child"; done
}

cmd_fail_node() {
    local node=${1:-} pid job victims=()
    [[ $node == node1 || $node == node2 ]] || { echo "usage: $0 fail-node node1|node2" >&2; exit 2; }
    # Its jobs (asked before the node goes): their step daemons and everything under them die with it.
    for job in $(squeue -h -w "$node" -t running -o %A 2>/dev/null); do
        for pid in $(pgrep -f "^slurmstepd: \[$job\."); do
            mapfile -t -O "${#victims[@]}" victims < <(descendants "$pid")
        done
    done
    if pid=$(pid_of "slurmd-$node" slurmd); then victims+=("$pid"); fi
    ((${#victims[@]})) && kill -9 "${victims[@]}" 2>/dev/null
    rm -f "$RUN_DIR/slurmd-$node.pid"
    log "node $node failed: killed ${#victims[@]} process(es) (slurmd and its jobs)"
}

cmd_status() {
    local ok=0 name comm pid n
    for name in munged:munged mariadb:mariadbd slurmdbd:slurmdbd slurmctld:slurmctld \
        slurmd-node1:slurmd slurmd-node2:slurmd; do
        comm=${name#*:}
        name=${name%%:*}
        if pid=$(pid_of "$name" "$comm"); then
            printf '%-14s running (pid %s)\n' "$name" "$pid"
        else
            printf '%-14s not running\n' "$name"
        fi
    done
    local check
    for check in munge mariadb slurmdbd slurmctld; do
        if "${check}_ok"; then
            printf '%-14s responds\n' "$check:"
        else
            printf '%-14s NOT responding\n' "$check:"
            ok=1
        fi
    done
    if slurmctld_ok; then
        echo
        sinfo -N -o '%N %P %t %c %m %E' || true
        nodes_usable || { echo "nodes:         NOT all usable"; ok=1; }
    fi
    for n in "${NODES[@]}"; do
        pid_of "slurmd-$n" slurmd >/dev/null || ok=1
    done
    return "$ok"
}

main() {
    [[ $(id -u) == 0 ]] || { echo "must run as root" >&2; exit 1; }
    case ${1:-} in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        stop) cmd_stop "${2:-}" ;;
        fail-node) cmd_fail_node "${2:-}" ;;
        *)
            echo "usage: $0 up|down|status|stop DAEMON|fail-node NODE" >&2
            exit 2
            ;;
    esac
}

main "$@"
