#!/usr/bin/env bash
# Run an experiment (sweep) on Slurm:
#   sbatch [--nodes N] [--gpus-per-node G] [--time T] [--partition P] slurm/sweep.sh EXPERIMENT.yaml [uorch launch flags]
# One sweep controller per node (srun); each takes its node rank, the node
# count and the rendezvous address from SLURM_* variables. Shortly before the
# time limit Slurm sends USR1 (--signal below): the sweep's workers
# checkpoint, the job requeues itself, and the requeued job resumes the sweep
# where it stopped (complete trials are skipped, interrupted ones resume).
# The uorch binary: $UORCH_BIN, else target/release/uorch of the submit folder.
#SBATCH --job-name=uorch-sweep
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=uorch-sweep-%j.out
set -uo pipefail

experiment=${1:?usage: sbatch slurm/sweep.sh EXPERIMENT.yaml [uorch launch flags]}
shift
uorch=${UORCH_BIN:-${SLURM_SUBMIT_DIR:-.}/target/release/uorch}
cd "${SLURM_SUBMIT_DIR:-.}"
echo "[sweep.sh] job ${SLURM_JOB_ID:-?} (start $(( ${SLURM_RESTART_COUNT:-0} + 1 ))) on ${SLURM_JOB_NODELIST:-?}: $experiment"

step=
requeue() {
  echo "[sweep.sh] time limit near: the sweep checkpoints and stops, then the job requeues"
  # SIGTERM to the job's steps (not this shell): the sweep controller asks its
  # launchers to checkpoint. (Signalling srun itself would cancel the step.)
  scancel --signal=TERM "$SLURM_JOB_ID"
  if [ -n "$step" ]; then
    wait "$step"
  fi
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
}
trap requeue USR1

srun --ntasks-per-node=1 --kill-on-bad-exit=1 "$uorch" launch "$experiment" "$@" &
step=$!
wait "$step"
status=$?
echo "[sweep.sh] sweep ended with status $status"
exit $status
