# Two commands on a fresh machine: `make demo` (main job on a bundled real example) and `make test`.
# Both create .venv/ and install the pinned stack first (tools/setup_env.sh; idempotent, fast when done).
PY := .venv/bin/python

.PHONY: env demo demo-align test test-slow bench
env:
	@bash tools/setup_env.sh

demo: env
	$(PY) tools/demo_detect.py --out-dir outputs
	$(PY) tools/demo_seg.py --out-dir outputs
	$(PY) tools/demo_depth.py --out-dir outputs
	$(PY) tools/demo.py --out-dir outputs

demo-align: env
	$(PY) tools/demo_align.py --out-dir outputs/align

test: env
	$(PY) -m pytest -q

test-slow: env
	$(PY) -m pytest -q -m slow

bench: env
	$(PY) benchmarks/backbone.py
