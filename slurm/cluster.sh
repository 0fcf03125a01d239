#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine (slurmctld + slurmd +
# munge from Debian), for the tests and for trying slurm/sweep.sh:
#   slurm/cluster.sh start [DIR]   install if needed, configure under DIR, start, wait until the node is idle
#   slurm/cluster.sh stop [DIR]
# Clients need SLURM_CONF=DIR/slurm.conf (printed by start). Runs as root.
set -euo pipefail
cmd=${1:?usage: slurm/cluster.sh start|stop [DIR]}
dir=$(realpath -m "${2:-/tmp/uorch-slurm}")
host=$(hostname -s)
say() { echo "[slurm] $*" >&2; }

stop() {
  for d in slurmd slurmctld; do
    if [ -f "$dir/run/$d.pid" ]; then
      kill "$(cat "$dir/run/$d.pid")" 2>/dev/null || true
      rm -f "$dir/run/$d.pid"
    fi
  done
}

case "$cmd" in
start)
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurmctld slurmd slurm-client munge from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
  fi
  mkdir -p "$dir"/{state,spool,log,run}
  cat > "$dir/slurm.conf" <<CONF
ClusterName=uorch
SlurmctldHost=$host
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SlurmdUser=root
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=3600
NodeName=$host CPUs=$(nproc) RealMemory=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) * 8 / 10 )) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    [ -f /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chmod 400 /etc/munge/munge.key; }
    chown -R munge:munge /var/log/munge /var/lib/munge /etc/munge /run/munge
    runuser -u munge -- munged --force
  fi
  stop
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld
  slurmd
  for _ in $(seq 1 60); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
    case "$state" in idle*|mixed*|alloc*) say "node $host is $state; export SLURM_CONF=$dir/slurm.conf"; exit 0 ;; esac
    sleep 0.5
  done
  say "the node did not become idle; logs in $dir/log"
  tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  exit 1
  ;;
stop)
  stop
  ;;
*)
  echo "usage: slurm/cluster.sh start|stop [DIR]" >&2
  exit 2
  ;;
esac
