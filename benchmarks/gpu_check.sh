#!/usr/bin/env bash
# GPU check: the gpu tests, resnet18_bnn pretraining steps/s on cuda, binary vs float step times
# (fused and Brevitas paths, torch.compile), the latent-cache benchmark on cuda. Figures go to
# $OUT/gpu_check.out if OUT is set, else benchmarks/gpu_check.out.
#   bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then  # the README's install
    python3 -m venv .venv
    . .venv/bin/activate
    pip install -q torch==2.14.1 torchvision==0.29.1
    pip install -q -e ".[dev]"
else
    . .venv/bin/activate
fi
REPORT="${OUT:-benchmarks}/gpu_check.out"
mkdir -p "$(dirname "$REPORT")"
: > "$REPORT"
say() { echo "$*" | tee -a "$REPORT"; }

say "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
say "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
python -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
    | tee -a "$REPORT"

say "## pytest -m gpu"
status=0
python -m pytest -m gpu -q -p no:cacheprovider -rs tests/test_gpu.py tests/test_fused_layers.py \
    > "$REPORT.pytest" 2>&1 || status=$?
tail -15 "$REPORT.pytest" | tee -a "$REPORT"
say "pytest -m gpu exit code $status"

say "## resnet18_bnn pretraining on cuda (cyclic 2..6 bits, 8-bit gradients, batch 50, 3x32x32)"
python - <<'PY' 2>&1 | grep -v -i "warn\|tip\|available\|LOCAL_RANK" | tee -a "$REPORT"
import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from cycl_bench.pretrain.callback import CyclicPrecision
from cycl_bench.pretrain.config import PretrainConfig
from cycl_bench.pretrain.module import BackboneClassifier
from cycl_bench.registry import BACKBONES

WARMUP, STEPS, BATCH = 20, 220, 50


class Clock(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == WARMUP:
            torch.cuda.synchronize()
            self.start = time.perf_counter()

    def on_train_end(self, trainer, *args):
        torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start


torch.manual_seed(0)
config = PretrainConfig(epochs=1, batch_size=BATCH)
model = BACKBONES.build("resnet18_bnn", num_classes=100, image_size=32)
module = BackboneClassifier(model, num_classes=100, lr=1e-3, weight_decay=1e-5)
data = TensorDataset(torch.randn(STEPS * BATCH, 3, 32, 32), torch.arange(STEPS * BATCH) % 100)
clock = Clock()
trainer = pl.Trainer(
    accelerator="gpu", devices=1, max_steps=STEPS, logger=False, enable_checkpointing=False,
    enable_progress_bar=False, enable_model_summary=False,
    callbacks=[CyclicPrecision.from_config(config, input_shape=(3, 32, 32)), clock],
)
trainer.fit(module, DataLoader(data, batch_size=BATCH, shuffle=True))
timed = STEPS - WARMUP
print(f"pretrain_steps_per_s {timed / clock.seconds:.2f} ({timed} steps after {WARMUP} warm-up, "
      f"{clock.seconds:.1f} s, peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB)")
PY

say "## binary vs float step time on cuda, fused and Brevitas paths (benchmarks/bench_backbones.py)"
python benchmarks/bench_backbones.py --device cuda --batch-size 128 --repeats 7 --warmup 2 \
    --backbones tiny_bnn resnet18_bnn --switching-backbone "" --paths fused brevitas \
    2>&1 | grep -v -i "warn" | tee -a "$REPORT" || say "bench_backbones.py failed"
say "## the same with torch.compile (compilation in the warm-up)"
python benchmarks/bench_backbones.py --device cuda --batch-size 128 --repeats 7 --warmup 2 \
    --backbones tiny_bnn --switching-backbone "" --paths fused compiled \
    2>&1 | grep -v -i "warn" | tail -3 | tee -a "$REPORT" || say "torch.compile failed"

say "## latent-cache benchmark on cuda (benchmarks/bench_latent_cache.py)"
python benchmarks/bench_latent_cache.py --backbone resnet18_bnn --repeats 3 --device cuda \
    2>&1 | grep -v -i "warn" | tail -3 | tee -a "$REPORT" || say "bench_latent_cache.py failed"

# The full protocol (resnet18_bnn, 10 epochs of cyclic pretraining, every entry), synthetic, one
# seed, stopped after FULL_PROTOCOL_S seconds (default 420): the cells finished by then are in
# the run folder, and `run --resume` continues it.
say "## core50_nc, full protocol, synthetic, seed 0, on cuda (at most ${FULL_PROTOCOL_S:-420} s)"
RUNS="$(dirname "$REPORT")/gpu_check_runs"
started=$(date +%s)
full_status=0
timeout "${FULL_PROTOCOL_S:-420}" python -m cycl_bench run core50_nc --data synthetic \
    --seeds 0 --device cuda --wandb disabled --out "$RUNS" --cache-dir "$RUNS/cache" \
    > "$REPORT.full" 2>&1 || full_status=$?
say "full protocol: exit code $full_status after $(( $(date +%s) - started )) s"
grep -E "^pretraining|seed 0: final" "$REPORT.full" | tee -a "$REPORT" || true

say "## summary"
{
    echo "| measure | value |"
    echo "|---|---|"
    grep -h "^pretrain_steps_per_s" "$REPORT" | sed 's/^pretrain_steps_per_s \([^ ]*\).*/| resnet18_bnn pretraining steps\/s | \1 |/' || true
    grep -h -E "^(tiny_bnn|resnet18_bnn) " "$REPORT" | awk '{printf "| step s %s %s: binary, float, ratio, cycled, ratio | %s %s %s %s %s |\n", $1, $3, $4, $5, $6, $7, $8}' || true
    grep -h "speed-up" "$REPORT" | sed 's/^/| latent cache | /; s/$/ |/' || true
    grep -h "seed 0: final" "$REPORT.full" | sed 's/^\[[0-9/]*\] /| full protocol cell | /; s/$/ |/' || true
    echo "| full protocol exit code, s | $full_status, $(( $(date +%s) - started )) |"
} | tee -a "$REPORT"
say "# done; figures in $REPORT"
