#!/usr/bin/env bash
# Issue 4's GPU figures in one go, for a machine with a CUDA GPU and PyTorch already installed
# (no package registry needed: the package runs from src/, its other requirements are common ones).
#
#   bash benchmarks/gpu_session.sh MNIST_DIR LOG_DIR
#
# 1. the CUDA tests (no host waits inside an epoch, bf16 within 0.1 dB PSNR of fp32, bit-identical
#    resume on CUDA);
# 2. the default full study three ways, timed end to end after a warm-up run that caches the
#    feature classifier: trials one at a time (--workers 1), two at a time (--workers 2), and
#    one at a time in bf16.
# Everything it prints is also written to LOG_DIR (one log per step, the studies' summaries).
# DEVICE=cpu and STUDY_ARGS="--preset quick ..." make a quick trial run of the script itself.
set -uo pipefail
data=${1:?usage: gpu_session.sh MNIST_DIR LOG_DIR}
logs=${2:?usage: gpu_session.sh MNIST_DIR LOG_DIR}
device=${DEVICE:-cuda}
study_args=${STUDY_ARGS:-}
mkdir -p "$logs"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg PYTHONUNBUFFERED=1
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$(mktemp -d)}"  # the classifier cache, shared by the runs below

python3 -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')" \
  | tee "$logs/environment.log"

echo "== CUDA tests"
python3 -m pytest -q -rs -k cuda tests/test_train.py 2>&1 | tee "$logs/cuda_tests.log"

echo "== full studies"
# Training and evaluation seconds of a study, from its models' timing.json files.
sum_timings='
import json, pathlib, sys
timings = [json.loads(path.read_text()) for path in pathlib.Path(sys.argv[1]).glob("models/*/timing.json")]
train, evaluation = (sum(t[key] for t in timings) for key in ("train_seconds", "eval_seconds"))
print(f"  training {train:.1f} s, evaluation {evaluation:.1f} s, {len(timings)} models")'
# shellcheck disable=SC2086  # STUDY_ARGS is a list of options
python3 -m latentsweep -q run --device "$device" --data-dir "$data" --out "$logs/warm-up" --latent-dims 2 \
  --epochs 1 --train-subset 1000 > /dev/null 2>&1
for name in one-at-a-time two-at-a-time one-at-a-time-bf16; do
  case $name in
    one-at-a-time) options="--workers 1" ;;
    two-at-a-time) options="--workers 2" ;;
    one-at-a-time-bf16) options="--workers 1 --precision bf16" ;;
  esac
  started=$(date +%s.%N)
  # shellcheck disable=SC2086
  python3 -m latentsweep run --device "$device" --data-dir "$data" --out "$logs/study-$name" $options $study_args \
    > "$logs/study-$name.log" 2>&1
  status=$?
  seconds=$(python3 -c "print(round($(date +%s.%N) - $started, 1))")
  echo "study $name ($options): exit $status, $seconds s wall time" | tee -a "$logs/studies.log"
  python3 -c "$sum_timings" "$logs/study-$name" | tee -a "$logs/studies.log"
  sed -n '/^latent  *PSNR/,/^Combined/p' "$logs/study-$name.log" | tee -a "$logs/studies.log"
done
