# hsicls — set-up, demo, tests and benchmarks.
#   make demo                 install into .venv and run the pipeline on the sample scene
#   make test                 install into .venv and run the test suite
#   make TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128' demo
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.hsicls-installed
DEMO_DIR   ?= demo_out
DEMO_EPOCHS ?= 80
DEMO_PATCH  ?= 7

.PHONY: install lint demo test bench bench-accuracy bench-protocol bench-map bench-gpu bench-peers clean sample

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	@mkdir -p $(DEMO_DIR)
	$(BIN)/hsicls preprocess sample_data/sample_scene.tif --labels sample_data/sample_labels.tif \
		-o $(DEMO_DIR)/prepared.h5 --overwrite
	$(BIN)/hsicls train $(DEMO_DIR)/prepared.h5 -o $(DEMO_DIR)/model.pt --epochs $(DEMO_EPOCHS) \
		--patch-size $(DEMO_PATCH) --overwrite
	$(BIN)/hsicls evaluate $(DEMO_DIR)/model.pt $(DEMO_DIR)/prepared.h5
	$(BIN)/hsicls predict-map sample_data/sample_scene.tif -m $(DEMO_DIR)/model.pt \
		-o $(DEMO_DIR)/map.tif --overwrite
	@echo "map written to $(DEMO_DIR)/map.tif"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: install lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/model_cost.py
	$(BIN)/python bench/sample_spectral_vs_spatial.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/predict_map.py

bench-protocol: install
	$(BIN)/python bench/protocol.py

bench-map: install
	$(BIN)/python bench/predict_map.py

# the peers' published code, fetched beside the repository (never copied into it), and what it imports
PEERS ?= /tmp/hsicls-peers
bench-peers: install
	$(BIN)/pip install -q einops tqdm
	test -d $(PEERS)/HSI_SSFTT || git clone -q https://github.com/zgr6010/HSI_SSFTT $(PEERS)/HSI_SSFTT
	test -d $(PEERS)/DeepHyperX || git clone -q https://github.com/nshaud/DeepHyperX $(PEERS)/DeepHyperX
	$(BIN)/python bench/peers.py --ssftt $(PEERS)/HSI_SSFTT --deephyperx $(PEERS)/DeepHyperX

bench-accuracy: install
	$(BIN)/python bench/accuracy.py

# needs a GPU and a CUDA build of torch: make TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128' bench-gpu
bench-gpu: install
	$(BIN)/python bench/gpu.py

sample: install
	$(BIN)/python sample_data/make_sample.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
