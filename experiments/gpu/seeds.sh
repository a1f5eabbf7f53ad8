#!/usr/bin/env bash
# One recipe, several seeds, side by side on one lent GPU, in one device call (experiments/gpu/README.md).
#
# Runs in the repository root of the device's copy of the working tree, with .gpu/data (carry_data.py pack) and,
# where Keras is missing there, .whl/ (its wheels) carried. Every run writes its folder under $OUT, so whatever
# finished comes back even when the call is stopped; each run gets SIGTERM at BUDGET_S seconds after the start,
# which train.py turns into a clean stop after a checkpoint (exit 130, continue with --resume).
#
#   SEEDS="1 2 3 4 5 6" EPOCHS=80 BUDGET_S=470 bash experiments/gpu/seeds.sh
#   # locally, on the CPU, as a dry run (tiny data, one epoch):
#   OUT=/tmp/out PY=.venv/bin/python WHEELS=none DATA_SRC=/tmp/packed SEEDS="1 2" EPOCHS=1 WIDTH=8 \
#       bash experiments/gpu/seeds.sh
#
# Settings (environment): SEEDS, EPOCHS, BUDGET_S, WIDTH, BLOCKS (last-stage blocks), LR, TEACHERS (space-separated
# model files; "" for none), DISTILL (weight), EXTRA (more train.py flags), PY (python), DATA_SRC (packed data),
# DATA (where to unpack it), BACKEND (Keras backend, default jax), PROBE=1 (time 40 training batches first),
# WHEELS (folder of wheels to install first, default .whl).
set -uo pipefail
: "${OUT:?OUT must name the folder the runs are written to}"
PY=${PY:-python3}
SEEDS=${SEEDS:-"1 2 3 4"}
EPOCHS=${EPOCHS:-80}
BUDGET_S=${BUDGET_S:-470}
WIDTH=${WIDTH:-24}
BLOCKS=${BLOCKS:-2}
LR=${LR:-0.05}
TEACHERS=${TEACHERS-"experiments/teachers/fernet24_kd_e80.keras models/pretrained/fer_model.keras"}  # "" = no teacher
DISTILL=${DISTILL:-0.5}
EXTRA=${EXTRA:-}
DATA_SRC=${DATA_SRC:-.gpu/data}
DATA=${DATA:-/tmp/fer2013_features}
BACKEND=${BACKEND:-jax}
start=$(date +%s)

WHEELS=${WHEELS:-.whl}
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
        || { echo "seeds.sh: the carried wheels did not install" >&2; exit 1; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
[ -f "$DATA/meta.json" ] || "$PY" experiments/gpu/carry_data.py unpack --src "$DATA_SRC" --out "$DATA" || exit 1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

export KERAS_BACKEND=$BACKEND PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several processes share the GPU: JAX takes memory as it needs it
if [ "${PROBE:-0}" = 1 ]; then  # one process's training speed on this machine, before the runs
    "$PY" benchmarks/bench_train.py --models fernet --width "$WIDTH" --features raw --augment --steps 40 2>&1 \
        | grep -v '^[IWE]0000'
fi
common=(--batch-size 128 --optimizer momentum --optimizer-param 0.9 --schedule cosine --warmup-epochs 1
        --weight-decay 0.0005 --label-smoothing 0.1 --augment --random-erasing 0.3 --keep-prob 0.7)
teacher=()
[ -n "$TEACHERS" ] && read -r -a teacher <<<"--teacher $TEACHERS"
mkdir -p "$OUT"
left=$((BUDGET_S - ($(date +%s) - start)))
echo "seeds.sh: seeds $SEEDS, width $WIDTH, $EPOCHS epochs, backend $BACKEND, $left s left for training"
for seed in $SEEDS; do
    # shellcheck disable=SC2086  # EXTRA is a list of flags
    timeout -s TERM -k 30 "$left" "$PY" train.py --data "$DATA" --model fernet --width "$WIDTH" \
        --last-stage-blocks "$BLOCKS" --features raw "${teacher[@]}" --distill-weight "$DISTILL" \
        --epochs "$EPOCHS" --learning-rate "$LR" "${common[@]}" $EXTRA --seed "$seed" --verbose 2 \
        --out "$OUT/seed$seed" >"$OUT/seed$seed.log" 2>&1 &
done
wait
for seed in $SEEDS; do
    echo "seed $seed: $(grep -c '^epoch ' "$OUT/seed$seed.log") epochs; $(grep '^epoch ' "$OUT/seed$seed.log" | tail -n 1)"
    grep -m 3 -E 'Traceback|^train.py: (error|warning)|interrupted' "$OUT/seed$seed.log"
done
echo "seeds.sh: $(( $(date +%s) - start )) s in all"
