#!/usr/bin/env bash
# A one-host Slurm cluster on loopback for batchd's tests (written from
# ../shared/slurm/fixture.sh, without slurmrestd: batchd drives the CLI).
#   scripts/slurm-cluster.sh up DIR [PORT]   start munged, slurmctld and slurmd; print SLURM_CONF
#   scripts/slurm-cluster.sh down DIR        cancel every job, stop the daemons
# Facts from bringing it up (see the fixture for more):
# - slurmctld schedules ~3 s after it starts; batch_sched_delay=0 keeps arrays quick.
# - plain sacct needs slurmdbd (absent here); `sacct -c` reads the jobcomp/filetxt
#   file, one key=value line per finished job, the record after MinJobAge.
# - slurmstepd outlives slurmd and ignores SIGTERM: cancel jobs before the daemons go.
# - squeue -t all shows a finished job until MinJobAge (MIN_JOB_AGE, default 300 s).
# - Tiny tasks: the scheduler starts a pass about once a second, so the node
#   claims CPUS (default 16, more than this machine has; config_overrides lets
#   slurmd believe it) to start that many elements per pass.
set -euo pipefail
cmd=${1:?usage: slurm-cluster.sh up|down DIR [PORT]}
D=${2:?usage: slurm-cluster.sh up|down DIR [PORT]}
P=${3:-16817}
ME=$(id -un)
export SLURM_CONF=$D/slurm.conf

# Whether a pid runs (a zombie does not: under a test runner that is a
# child subreaper, the daemons' corpses wait for it to reap them).
alive() { [ -n "$1" ] && [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }

up() {
  rm -rf "$D"; mkdir -p "$D"/{munge,state,spool,log}
  chmod 755 "$D" "$D/munge"              # munged wants o+x on its socket dir
  mungekey -c -k "$D/munge/munge.key"
  munged -F --key-file="$D/munge/munge.key" --socket="$D/munge/munge.sock" \
    --pid-file="$D/munge/munged.pid" --seed-file="$D/munge/seed" \
    --log-file="$D/log/munged.log" >/dev/null 2>&1 & echo $! >"$D/munged.pid"
  cat >"$SLURM_CONF" <<CONF
ClusterName=batchdtest
SlurmctldHost=localhost
SlurmUser=$ME
SlurmdUser=$ME
SlurmctldPort=$P
SlurmdPort=$((P+1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.sock
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/state/slurmctld.pid
SlurmdPidFile=$D/spool/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,default_queue_depth=10000
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
MinJobAge=${MIN_JOB_AGE:-300}
MaxArraySize=${MAX_ARRAY_SIZE:-1001}
NodeName=localhost NodeAddr=127.0.0.1 CPUs=${CPUS:-16} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  for _ in $(seq 50); do [ -S "$D/munge/munge.sock" ] && break; sleep 0.1; done
  slurmctld -D >"$D/log/slurmctld.out" 2>&1 & echo $! >"$D/slurmctld.pid"
  slurmd -D -N localhost >"$D/log/slurmd.out" 2>&1 & echo $! >"$D/slurmd.pid"
  # sinfo retries for long against a controller that is not there: ask
  # with a deadline, and give up at once if slurmctld died (a port in use).
  for _ in $(seq 300); do
    alive "$(cat "$D/slurmctld.pid")" || break
    [ "$(timeout 2 sinfo -h -o %T 2>/dev/null)" = idle ] && break
    sleep 0.1
  done
  if [ "$(timeout 2 sinfo -h -o %T 2>/dev/null)" != idle ]; then
    echo "slurm-cluster: the node did not come up: $(tail -1 "$D/log/slurmctld.log" 2>/dev/null)" >&2
    down
    exit 1
  fi
  echo "$SLURM_CONF"
}

down() {
  if [ -f "$D/slurmctld.pid" ] && alive "$(cat "$D/slurmctld.pid")"; then
    scancel -p debug 2>/dev/null || true
    for _ in $(seq 100); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  for p in slurmd slurmctld munged; do
    [ -f "$D/$p.pid" ] && kill "$(cat "$D/$p.pid")" 2>/dev/null || true
  done
  for p in slurmd slurmctld munged; do
    [ -f "$D/$p.pid" ] || continue
    for _ in $(seq 100); do alive "$(cat "$D/$p.pid")" || break; sleep 0.1; done
    rm -f "$D/$p.pid"
  done
}
"$cmd"
