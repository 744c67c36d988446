#!/usr/bin/env bash
# The GPU measurements and the test suite, in about 8 minutes on one GPU.
#
#   tools/gpu_check.sh [OUT_DIR]        # default OUT_DIR: gpu-check
#
# Runs from the repository root with the Python that has JAX for the GPU (`python3`, or
# $PYTHON), with or without sweepjax installed. Writes into OUT_DIR:
#   roofline.txt        the GPU's measured matmul peak and copy bandwidths
#   bench_default.*     tools/bench.py's two default rows (engine and one-at-a-time scan)
#   bench_large.*       MLP 40-32-32-10 at batch 128, P = 1024, 4096, 16384, and hidden 512
#   compile.*           tools/bench_compile.py: compile seconds against population size
#   schedules_*         the schedule benchmark twice: compiled, then from the compile cache
#   tests.txt           the test suite on the GPU
#   summary.md          all of the above in one file (each step's table and its last errors)
# Each step has its own time limit, so one slow step cannot take the others' time.
set -uo pipefail
out=${1:-gpu-check}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

missing=$("$py" - <<'PY'
import importlib.util
need = ["jax", "flax", "optax", "orbax.checkpoint", "filelock", "mnist1d", "scipy", "tqdm"]
print(" ".join(n for n in need if importlib.util.find_spec(n.split(".")[0]) is None))
PY
)
if [ -n "$missing" ]; then
    echo "gpu_check: missing Python packages: $missing (install them, or put their wheels on PYTHONPATH)" >&2
    exit 2
fi
"$py" -c "import jax; assert jax.default_backend() == 'gpu', jax.devices(); print(jax.devices())" || exit 2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

step() {  # step SECONDS NAME COMMAND...: run with a limit, keep its output, go on either way
    local limit=$1 name=$2; shift 2
    echo "== $name (at most ${limit}s)"
    timeout "$limit" "$@" > "$out/$name.md" 2> "$out/$name.err"
    echo "   exit $? after ${SECONDS}s in all"
}

step 30 roofline "$py" tools/roofline.py
step 100 bench_default "$py" tools/bench.py --ways auto scan --steps 1000 --repeats 2 \
    --baseline-members 2 --json "$out/bench_default.json"
step 150 bench_large "$py" tools/bench.py --ways auto scan --hidden 32 --batch 128 \
    --population 1024 4096 16384 --steps 1000 --repeats 2 --baseline-members 1 \
    --json "$out/bench_large.json"
step 60 bench_h512 "$py" tools/bench.py --ways auto scan --hidden 512 --batch 128 \
    --population 1024 --steps 300 --repeats 2 --baseline-members 1 --json "$out/bench_h512.json"
step 60 compile "$py" tools/bench_compile.py --cases population --json "$out/compile.json"
cache=$(mktemp -d)
for run in compiled cached; do  # the full schedule benchmark; the second loads its programs
    folder=$(mktemp -d)
    step 90 "schedules_$run" "$py" -m sweepjax.cli bench-schedules --quiet \
        --out "$folder/run" --set "compile_cache=$cache"
    cp "$folder/run/sweep.json" "$out/schedules_$run.json" 2>/dev/null
    cp "$folder/run/leaderboard.txt" "$out/schedules_$run.txt" 2>/dev/null
    rm -rf "$folder"
done
# the suite: 8 workers sharing the GPU, each taking a tenth of its memory
XLA_PYTHON_CLIENT_MEM_FRACTION=0.1 timeout 180 "$py" -m pytest -q -n 8 \
    > "$out/tests.txt" 2>&1
echo "== tests: exit $? after ${SECONDS}s in all"; tail -3 "$out/tests.txt"

for f in "$out"/gpu.txt "$out"/*.md "$out"/tests.txt; do  # one file to read or send
    [ "$f" = "$out/summary.md" ] && continue
    echo "## $(basename "$f")"; cat "$f"; err="${f%.md}.err"
    [ -s "$err" ] && { echo "(last lines of its stderr)"; tail -5 "$err"; }; echo
done > "$out/summary.md" 2>/dev/null
