#!/usr/bin/env bash
# Create .venv/ at the repo root (if missing) and install the pinned, verified stack into it.
# Idempotent: a second run only checks what is there. The one workaround of the stack lives here:
#
#   mmcv 2.1.0 (the newest that mmdet 3.3.0 / mmseg 1.2.2 accept) is only on PyPI as source. Its setup.py
#   hard-codes -std=c++17, but torch 2.14's headers need C++20 ("C++20 or later compatible compiler is
#   required to use ATen"). We do not patch mmcv: we build it with CC/CXX pointing at a tiny g++ wrapper
#   that rewrites that one flag. The wheel is cached in ~/.cache/pe_dense/wheels so reinstalls (and CI on
#   the same machine) skip the ~10 minute build. CFLAGS carries -O3 -DNDEBUG -fwrapv on purpose: setting
#   CFLAGS replaces Python's own flags, and -g0 alone would build the ops unoptimised (2.3x slower NMS/RoIAlign).
#
# Optional: PE_DENSE_WHEELS=DIR (a pip --find-links folder) also installs the 'd2' extra from it: detectron2 has no
# PyPI release, so its wheel must be in DIR; it goes in with --no-deps (its own metadata would pull unpinned
# versions) and D2_DEPS below are its runtime dependencies, from PyPI or DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
CACHE="${PE_DENSE_CACHE:-$HOME/.cache/pe_dense}"
WHEELS="$CACHE/wheels"
PY="$VENV/bin/python"
STAMP="$VENV/.pe_dense_installed"
REQ="$ROOT/requirements.txt"
LOCK="$ROOT/requirements.lock"
WHEEL_DIR="${PE_DENSE_WHEELS:-}"
# detectron2's runtime dependencies: setup.cfg's 'd2' extra without detectron2 (tests/test_extras.py keeps them equal)
D2_DEPS=("fvcore<0.1.6" yacs tabulate termcolor cloudpickle "omegaconf>=2.1,<2.4" "hydra-core>=1.1" pycocotools)

log() { printf '[setup_env] %s\n' "$*" >&2; }

# torchcodec decodes through FFmpeg's shared libraries (Debian package).
if ! ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so'; then
  if [ "$(id -u)" = 0 ]; then
    log "installing ffmpeg (needed by torchcodec)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    log "WARNING: FFmpeg libraries missing and not root: install 'ffmpeg' for video decoding"
  fi
fi

[ -x "$PY" ] || { log "creating $VENV"; python3 -m venv "$VENV"; }

# Fast path: everything already installed for this exact requirements file.
if [ -f "$STAMP" ] && cmp -s "$STAMP" <(cat "$REQ" "$LOCK" "$0"; echo "wheels=$WHEEL_DIR"); then
  "$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >/dev/null
  exit 0
fi

pip() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }
ver() { sed -n "s/^$1==//p" "$REQ"; }

log "torch/torchvision (local wheels)"
pip -c "$LOCK" "torch==$(ver torch)" "torchvision==$(ver torchvision)"
pip "setuptools==$(ver setuptools)" "wheel==$(ver wheel)" "ninja==$(ver ninja)"

MMCV="mmcv==$(ver mmcv)"
if ! "$PY" -c "import mmcv.ops" 2>/dev/null; then
  mkdir -p "$WHEELS"
  if ! ls "$WHEELS"/mmcv-$(ver mmcv)-*.whl >/dev/null 2>&1; then
    log "building $MMCV with compiled ops (about 10 minutes on 2 cores, cached afterwards)"
    wrap="$(mktemp -d)"
    cat >"$wrap/cxx" <<'WRAP'
#!/usr/bin/env bash
args=(); for a in "$@"; do [ "$a" = "-std=c++17" ] && a="-std=c++20"; args+=("$a"); done
exec g++ "${args[@]}"
WRAP
    chmod +x "$wrap/cxx"
    CC="$wrap/cxx" CXX="$wrap/cxx" MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="$(nproc)" \
      CFLAGS="-O3 -g0 -DNDEBUG -fwrapv" \
      "$PY" -m pip wheel -q --no-deps --no-build-isolation --no-binary mmcv -w "$WHEELS" "$MMCV"
    rm -rf "$wrap"
  fi
  pip --no-deps "$WHEELS"/mmcv-$(ver mmcv)-*.whl
fi

log "the rest of the pinned stack"
SAM2_BUILD_CUDA=0 pip --no-build-isolation -r "$REQ" -c "$LOCK"
pip --no-deps --no-build-isolation -e "$ROOT"
"$PY" -c "import mmcv.ops, mmdet, mmseg, sam2, timm, torchcodec, onnxruntime, openvino, pe_dense" \
  || { log "import check failed"; exit 1; }
if [ -n "$WHEEL_DIR" ]; then
  [ -d "$WHEEL_DIR" ] || { log "PE_DENSE_WHEELS=$WHEEL_DIR is not a folder (it should hold a detectron2 wheel)"; exit 1; }
  ls "$WHEEL_DIR"/detectron2-*.whl >/dev/null 2>&1 \
    || { log "no detectron2-*.whl in PE_DENSE_WHEELS=$WHEEL_DIR: build one (pip wheel --no-deps --no-build-isolation \
'git+https://github.com/facebookresearch/detectron2.git') into it, or unset PE_DENSE_WHEELS"; exit 1; }
  log "the d2 extra: detectron2 from $WHEEL_DIR (--no-deps) and its dependencies"
  pip --find-links "$WHEEL_DIR" -c "$LOCK" "${D2_DEPS[@]}"
  pip --no-deps --find-links "$WHEEL_DIR" --no-index detectron2
  "$PY" -c "import detectron2, fvcore, pe_dense.d2" || { log "detectron2 import check failed"; exit 1; }
fi
{ cat "$REQ" "$LOCK" "$0"; echo "wheels=$WHEEL_DIR"; } >"$STAMP"
log "done"
