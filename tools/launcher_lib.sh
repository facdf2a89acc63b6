# Shared by tools/{dist,slurm}_{train,test}.sh (sourced, not run): argument checks that answer
# with one line and the usage, and the torchrun / srun command lines.
# The sourcing script sets USAGE before sourcing.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAUNCHER="$(basename "$0")"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

usage_error() {
    echo "$LAUNCHER: $1" >&2
    echo "$USAGE" >&2
    exit 2
}

# need_args GIVEN NAMES...: fail naming the first missing positional argument.
need_args() {
    local given=$1
    shift
    if [ "$given" -lt $# ]; then
        local missing=("$@")
        usage_error "missing argument ${missing[$given]}"
    fi
}

# count NAME VALUE MIN: VALUE must be a whole number >= MIN.
count() {
    if ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt "$3" ]; then
        usage_error "$1 must be a whole number >= $3, got '$2'"
    fi
}

# torchrun_tool NPROC_PER_NODE SCRIPT ARGS...: torchrun on this node (NNODES, NODE_RANK,
# MASTER_ADDR, PORT from the environment).
torchrun_tool() {
    local nproc=$1 script=$2
    shift 2
    count NPROC_PER_NODE "$nproc" 1
    count NNODES "${NNODES:-1}" 1
    count NODE_RANK "${NODE_RANK:-0}" 0
    [ "${NODE_RANK:-0}" -lt "${NNODES:-1}" ] \
        || usage_error "NODE_RANK must be below NNODES (${NNODES:-1}), got '${NODE_RANK:-0}'"
    exec "${PYTHON:-python}" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="$nproc" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
        "$ROOT/tools/$script" "$@"
}

# srun_tool PARTITION JOB_NAME SCRIPT ARGS...: one task per GPU (GPUS, GPUS_PER_NODE), or
# with GPUS=0 CPU tasks without any gres (TASKS, TASKS_PER_NODE).
srun_tool() {
    local partition=$1 job=$2 script=$3
    shift 3
    local gpus=${GPUS:-8} layout
    count GPUS "$gpus" 0
    count CPUS_PER_TASK "${CPUS_PER_TASK:-5}" 1
    if [ "$gpus" -eq 0 ]; then
        count TASKS "${TASKS:-1}" 1
        count TASKS_PER_NODE "${TASKS_PER_NODE:-${TASKS:-1}}" 1
        layout=(--ntasks="${TASKS:-1}" --ntasks-per-node="${TASKS_PER_NODE:-${TASKS:-1}}")
    else
        count GPUS_PER_NODE "${GPUS_PER_NODE:-8}" 1
        layout=(--gres=gpu:"${GPUS_PER_NODE:-8}" --ntasks="$gpus"
                --ntasks-per-node="${GPUS_PER_NODE:-8}")
    fi
    # shellcheck disable=SC2086  # SRUN_ARGS holds several words
    exec srun -p "$partition" --job-name="$job" "${layout[@]}" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
        "${PYTHON:-python}" -u "$ROOT/tools/$script" "$@"
}
