#!/bin/bash -l
# The U(1) experiment over every GPU of a PBS job, one MPI rank per GPU.
#
# Written for ALCF's Polaris (4 A100s and 32 cores per node, Cray MPICH's
# mpiexec); other PBS clusters need other #PBS lines and GPUS_PER_NODE/DEPTH.
# Submit from the repository root, which is where the job starts:
#
#   qsub -A <project> -q debug -l select=2 examples/u1/launch_pbs.sh
#   qsub -A <project> -q prod -l select=8 \
#       -v BACKEND=mpi,WORKDIR=workdir/u1_mpi examples/u1/launch_pbs.sh
#
# Inside an interactive job (qsub -I), run it with bash and add flags:
#
#   bash examples/u1/launch_pbs.sh --mode=train --config.train.num_steps=5000
#
# Settings, from the environment (qsub -v NAME=value,...):
#   BACKEND        jax (default: jax.distributed, one mesh over all GPUs) or
#                  mpi (mpi4jax allreduce of the gradients)
#   CONFIG         config file (default examples/u1/configs/paper.py)
#   WORKDIR        output directory (default workdir/u1); submitting again
#                  with the same one resumes from its latest checkpoint
#   EXTRA_FLAGS    more flags for main.py, separated by spaces
#   VENV           a virtual environment to activate first
#   GPUS_PER_NODE  ranks per node (default 4)
#   DEPTH          cores per rank (default 8: 32 cores over 4 ranks)
#
# The chain counts (config.train.num_chains, config.eval.num_chains) must be
# multiples of the number of GPUs, nodes x GPUS_PER_NODE; main.py refuses
# others before it compiles anything.
#
#PBS -N l2hmc_u1
#PBS -l select=2:system=polaris
#PBS -l place=scatter
#PBS -l walltime=01:00:00
#PBS -l filesystems=home:eagle
#PBS -j oe

set -euo pipefail

cd "${PBS_O_WORKDIR:-$PWD}"
if [[ -n "${VENV:-}" ]]; then
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
fi

BACKEND=${BACKEND:-jax}
CONFIG=${CONFIG:-examples/u1/configs/paper.py}
WORKDIR=${WORKDIR:-workdir/u1}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
DEPTH=${DEPTH:-8}

# One line per node in $PBS_NODEFILE under place=scatter; sort -u also
# copes with files that repeat a node once per chunk.
NNODES=$(sort -u "$PBS_NODEFILE" | wc -l)
NRANKS=$((NNODES * GPUS_PER_NODE))
echo "$(date -u +%FT%TZ) ${NNODES} nodes x ${GPUS_PER_NODE} GPUs = ${NRANKS} ranks," \
    "backend ${BACKEND}, config ${CONFIG}, workdir ${WORKDIR}"

# Each rank sees only its own GPU: the mpi backend splits its chains over
# every GPU it can see, and jax.distributed is told that GPU is its device 0.
# The local rank comes from Cray PALS, from MPICH/PMI or from Open MPI.
# shellcheck disable=SC2016
PER_RANK='
rank=${PALS_LOCAL_RANKID:-${PMI_LOCAL_RANK:-${OMPI_COMM_WORLD_LOCAL_RANK:-0}}}
export CUDA_VISIBLE_DEVICES=$((rank % GPUS_PER_NODE))
export JAX_LOCAL_DEVICE_IDS=0
exec python "$@"
'

# shellcheck disable=SC2086
mpiexec -n "$NRANKS" --ppn "$GPUS_PER_NODE" --depth "$DEPTH" --cpu-bind depth \
    --env OMP_NUM_THREADS="$DEPTH" --env GPUS_PER_NODE="$GPUS_PER_NODE" \
    bash -c "$PER_RANK" rank \
    examples/u1/main.py \
    --config="$CONFIG" \
    --workdir="$WORKDIR" \
    --config.parallel.backend="$BACKEND" \
    ${EXTRA_FLAGS:-} "$@"
