# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYNTH := data/synthetic
PYTEST_ARGS ?=

.PHONY: demo test venv clean-venv bench-demo bench-cuhk03

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the package's declared dependencies change.
# opencv-python replaced opencv-python-headless. Both install the same cv2 files, so removing
# one breaks the other: an environment made before the change drops both and reinstalls.
$(STAMP): setup.cfg pyproject.toml | $(PY)
	if $(PY) -m pip show --quiet opencv-python-headless 2>/dev/null; then \
	  $(PY) -m pip uninstall --quiet --yes opencv-python-headless opencv-python; fi
	$(PY) -m pip install --quiet -e ".[test,onnx]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) tools/demo.py

# The demo's accuracy promise and its time, measured (docs/BENCHMARKS.md): a fresh demo in
# runs/bench-demo, which tests/test_demo.py does not train long enough to check.
bench-demo: $(STAMP)
	$(PY) bench/demo.py --no-progress

# Real-data accuracy (docs/BENCHMARKS.md): CUHK03 from ../shared, ImageNet initialisation from
# the local weights file, then the same recipe from random initialisation.
bench-cuhk03: $(STAMP)
	$(PY) bench/accuracy.py --config configs/cuhk03.yaml --no-progress
	$(PY) bench/accuracy.py --config configs/cuhk03.yaml --weights null --no-progress

clean-venv:
	rm -rf $(VENV)
