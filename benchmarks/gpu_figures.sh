#!/usr/bin/env bash
# The GPU figures of the README, on a machine with one CUDA GPU and no network (the lent machine):
# e5-small's architecture with random weights (speed does not depend on the values), XQuAD-R from a tarball.
#   bash benchmarks/gpu_figures.sh PAYLOAD_DIR OUT_DIR [STEP_PATTERN]   (e.g. 'corpus|paragraphs': those steps only)
# PAYLOAD_DIR holds model.tgz (config + tokenizer of e5-small) and data.tgz (XQuAD-R, MLQA-R, MIRACL topics): made by
# benchmarks/gpu_payload.sh as .gpu/ (carry it). Steps in order of what the README lacks most; with the 15 minutes a
# session gets, run `throughput` alone first:
#   run(command="bash benchmarks/gpu_figures.sh .gpu $OUT throughput 2>&1 | tee $OUT/log.txt", carry=[".gpu"])
set -u
payload=$1 out=$2 only=${3:-.}
mkdir -p "$out" /tmp/gpu/model /tmp/gpu/data
step() {
  [[ $1 =~ $only || $1 == "random weights" ]] || return 0
  echo "== $1 ($(date +%T))"; shift; timeout "$@"; echo "== rc=$?"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
tar xzf "$payload/model.tgz" -C /tmp/gpu/model && tar xzf "$payload/data.tgz" -C /tmp/gpu/data
export XLIR_BENCH_DATA=/tmp/gpu/data HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 XLIR_BENCH_RESULTS=$out/results
if ! timeout 120 python3 -m pip install -q --no-deps --no-build-isolation --no-index -e .; then
  # no usable setuptools there: the package from the work tree, its entry points from a hand-made dist-info
  mkdir -p /tmp/gpu/site/xlir_bench-0.1.0.dist-info
  printf 'Metadata-Version: 2.1\nName: xlir-bench\nVersion: 0.1.0\n' >/tmp/gpu/site/xlir_bench-0.1.0.dist-info/METADATA
  python3 - <<'PY' >/tmp/gpu/site/xlir_bench-0.1.0.dist-info/entry_points.txt
import tomllib
eps = tomllib.load(open("pyproject.toml", "rb"))["project"]["entry-points"]["xlir_bench.models"]
print("[xlir_bench.models]"); [print(f"{k} = {v}") for k, v in eps.items()]
PY
  export PYTHONPATH=/tmp/gpu/site:$PWD
fi
step "random weights" 60 python3 benchmarks/random_weights.py /tmp/gpu/model /tmp/gpu/e5r
step "encode throughput" 420 python3 benchmarks/encode_throughput.py --device cuda --model-folder /tmp/gpu/model \
  --random --base --dtype bf16,fp16 --budgets default,4096 --host-passages 10000
step "encode speed" 110 python3 benchmarks/encode_speed.py --device cuda --model-folder /tmp/gpu/e5r --texts 5500 --batch-size 256
step "encode speed, paragraphs" 110 python3 benchmarks/encode_speed.py --device cuda --model-folder /tmp/gpu/e5r --texts 2200 --batch-size 256 --paragraphs
step "stream device check" 120 python3 benchmarks/stream_device_check.py --passages 200000 --device cuda
step "corpus scale" 150 python3 benchmarks/corpus_scale.py --sizes 100000,1000000 --device cuda
step "run xquad-r" 120 python3 -m xlir_bench.cli run --model hf:/tmp/gpu/e5r --suite xquad-r --device cuda --batch-size 256
step "train (torchrun, nccl)" 110 torchrun --nproc-per-node 1 -m xlir_bench.cli train --base hf:/tmp/gpu/e5r \
  --strategy hybrid --train-data mlqa-r --max-steps 60 --batch-size 64 --eval-every 30 --seed 0 --name gpu-smoke
ls -la "$out" "$out"/results/* 2>/dev/null
