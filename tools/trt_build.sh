#!/usr/bin/env bash
# Build a TensorRT engine from a pe_dense ONNX artefact and check it against onnxruntime with polygraphy.
#
#   tools/trt_build.sh exports/PE-Spatial-B16-512_512x512_fp16.onnx [MAX_BATCH]
#
# Strongly typed (--stronglyTyped): TensorRT keeps the precision of every tensor as exported, so an fp16
# artefact (tools/export.py --fp16) runs its MLPs in fp16 and its LayerNorms, attention logits and softmax in
# fp32, exactly as exported, and an fp32 artefact runs fp32 (no TF32). Without a GPU or without trtexec this
# script does nothing and exits 77 ("skipped"): it never pretends an engine was built.
# Tolerances of the polygraphy comparison: fp32 rtol 1e-3 / atol 1e-4, fp16 rtol 1e-2 / atol 1e-2 (the
# artefact's own parity tolerances in tests/export).
set -euo pipefail

onnx=${1:?usage: tools/trt_build.sh MODEL.onnx [MAX_BATCH]}
max_batch=${2:-8}
meta="${onnx%.onnx}.json"
[[ -f "$onnx" && -f "$meta" ]] || { echo "need $onnx and its metadata $meta (tools/export.py writes both)" >&2; exit 2; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "SKIPPED: no NVIDIA GPU visible (nvidia-smi); nothing was built" >&2; exit 77
fi
if ! command -v trtexec >/dev/null 2>&1; then
  echo "SKIPPED: trtexec not on PATH (install TensorRT, add its bin/ to PATH); nothing was built" >&2; exit 77
fi

read -r name h w batch fp16 < <(python3 - "$meta" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(m["input_name"], *m["input_size"], m["batch"], int(m["dtype"].startswith("float16")))
PY
)
if [[ "$batch" == "dynamic" ]]; then
  shapes=(--minShapes="$name:1x3x${h}x${w}" --optShapes="$name:1x3x${h}x${w}" --maxShapes="$name:${max_batch}x3x${h}x${w}")
  poly_shapes=(--trt-min-shapes "$name:[1,3,$h,$w]" --trt-opt-shapes "$name:[1,3,$h,$w]"
               --trt-max-shapes "$name:[$max_batch,3,$h,$w]" --input-shapes "$name:[1,3,$h,$w]")
else
  shapes=(); poly_shapes=()
fi
engine="${onnx%.onnx}.plan"
trtexec --onnx="$onnx" --saveEngine="$engine" --stronglyTyped "${shapes[@]}" --skipInference
if [[ "$fp16" == 1 ]]; then tol=(--rtol 1e-2 --atol 1e-2); else tol=(--rtol 1e-3 --atol 1e-4); fi
if command -v polygraphy >/dev/null 2>&1; then
  polygraphy run "$onnx" --trt --onnxrt --strongly-typed "${poly_shapes[@]}" "${tol[@]}"
else
  echo "polygraphy not installed (pip install polygraphy): engine built but not compared" >&2
fi
echo "engine: $engine"
