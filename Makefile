# deploylab: `make course` runs the whole course, `make test` checks it. Both install first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deploylab-installed
# Real TensorRT Python bindings for tests/test_tensorrt_conformance.py (downloaded, not installed).
TRT_WHEEL_LIST := tests/tensorrt_conformance/wheels.txt
TRT_WHEELS := $(VENV)/tensorrt-wheels
TRT_WHEELS_STAMP := $(TRT_WHEELS)/.downloaded
PIP := $(BIN)/python -m pip
PIP_FLAGS := --disable-pip-version-check --progress-bar off -c constraints.txt
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
COURSE_DIR := build/course
# Notebook kernels run `python` from PATH: make it the venv's.
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONHASHSEED := 0

.PHONY: help install course test lab notebooks lock clean

help:
	@echo "make course   install if needed, execute every notebook into $(COURSE_DIR)/"
	@echo "make test     install if needed, run the unit tests and the notebooks (nbval)"
	@echo "make lab      open JupyterLab on notebooks/"
	@echo "make notebooks  re-execute the notebooks in place (for committing outputs)"

install: $(STAMP) $(TRT_WHEELS_STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "Python 3.10+ is needed (python3.11 recommended)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) -q --upgrade "pip>=24" "setuptools<81" wheel
	$(PIP) install $(PIP_FLAGS) --no-build-isolation -e ".[course,test]"
	@# mmcv 1.7.2 is source-only and its setup.py imports pkg_resources (gone in setuptools 81):
	@# build it against the venv's setuptools<81; it builds as the pure-Python "lite" mmcv.
	MMCV_WITH_OPS=0 $(PIP) install $(PIP_FLAGS) --no-build-isolation mmcv==1.7.2
	$(PIP) install $(PIP_FLAGS) mmcls==0.25.0
	@# tritonclient 2.73.0 pins ml-dtypes<=0.5.4 and (grpc extra) protobuf<7, older than onnx needs;
	@# deploylab uses only its model_config_pb2, which loads with these (tests/test_triton_repo.py).
	$(PIP) install $(PIP_FLAGS) --no-deps tritonclient==2.73.0
	$(BIN)/python -c "import deploylab, torch, onnx, onnxruntime, openvino, mmcls, ray.serve, tritonclient.grpc.model_config_pb2; print('deploylab ready: torch', torch.__version__)"
	touch $(STAMP)

# Order-only on the venv: editing the wheel list re-downloads only the wheels, and reinstalling
# the venv does not re-download them. One pip call per line: the 10.x releases share a name.
$(TRT_WHEELS_STAMP): $(TRT_WHEEL_LIST) | $(STAMP)
	rm -rf $(TRT_WHEELS) && mkdir -p $(TRT_WHEELS)
	grep -v -E '^[[:space:]]*(#|$$)' $(TRT_WHEEL_LIST) | while read -r requirement; do \
		$(PIP) download --disable-pip-version-check --progress-bar off -q --no-deps --only-binary=:all: \
			-d $(TRT_WHEELS) "$$requirement" || exit 1; \
	done
	touch $(TRT_WHEELS_STAMP)

course: $(STAMP) $(TRT_WHEELS_STAMP)
	@mkdir -p $(COURSE_DIR)/results
	DEPLOYLAB_OUT=$(abspath $(COURSE_DIR)/results) $(BIN)/jupyter nbconvert --to notebook --execute \
		--ExecutePreprocessor.timeout=900 --output-dir $(COURSE_DIR) $(NOTEBOOKS)
	$(BIN)/jupyter nbconvert --to html --output-dir $(COURSE_DIR) $(addprefix $(COURSE_DIR)/,$(notdir $(NOTEBOOKS)))
	@echo "executed notebooks, HTML and results are in $(COURSE_DIR)/"

test: $(STAMP) $(TRT_WHEELS_STAMP)
	DEPLOYLAB_OUT=$(abspath build/test-results) $(BIN)/python -m pytest tests notebooks \
		--nbval-lax --nbval-cell-timeout=900 -p no:cacheprovider

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

notebooks: $(STAMP)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=900 $(NOTEBOOKS)

lock: $(STAMP)
	{ echo "# Exact versions CI tests (Python 3.11, x86-64 Linux). Regenerate with: make lock"; \
	  $(PIP) freeze --all --exclude-editable | grep -v -E '^(pip|deploylab)=='; } > constraints.txt

clean:
	rm -rf build $(VENV)
