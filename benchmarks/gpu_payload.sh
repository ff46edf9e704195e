#!/usr/bin/env bash
# Makes .gpu/ (git-ignored), the payload of benchmarks/gpu_figures.sh on the lent GPU machine, which has no network:
# model.tgz, e5-small's config and tokenizer (no weights: the GPU figures time random weights of its architecture),
# and data.tgz, the evaluation data. The device tool's `carry` takes the folder along (64 MiB with the tree).
#   bash benchmarks/gpu_payload.sh        (XLIR_BENCH_DATA: the data folder, default ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(python3 -c "from xlir_bench.models.e5_small import converted_path; print(converted_path())")
data=${XLIR_BENCH_DATA:-../shared/data}
mkdir -p .gpu
tar czf .gpu/model.tgz.tmp -C "$model" config.json tokenizer.json tokenizer_config.json && mv .gpu/model.tgz.tmp .gpu/model.tgz
tar czf .gpu/data.tgz.tmp -C "$data" . && mv .gpu/data.tgz.tmp .gpu/data.tgz
du -sh .gpu/*.tgz
