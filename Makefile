# Two commands on a fresh machine:   make demo    and    make test
# make demo installs only the lean prediction set (requirements-predict.txt, no TensorFlow) in its own venv;
# make test (and train, lint, convert-demo) install the full pinned set of requirements.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PREDICT_VENV ?= .venv-predict
PREDICT_PY := $(PREDICT_VENV)/bin/python
FER_CSV ?= ../shared/data/fer2013.csv.gz
DEMO_OUT ?= out/demo

.PHONY: setup setup-predict demo convert-demo test test-fast lint lint-imports clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

setup-predict: $(PREDICT_VENV)/.installed

$(PREDICT_VENV)/.installed: requirements-predict.txt
	$(PYTHON) -m venv $(PREDICT_VENV)
	$(PREDICT_PY) -m pip install --upgrade pip
	$(PREDICT_PY) -m pip install -r requirements-predict.txt
	touch $@

# docs/astronaut.jpg: scikit-image's astronaut photo (NASA, public domain), so the demo needs no scikit-image.
demo: setup-predict
	mkdir -p $(DEMO_OUT)
	$(PREDICT_PY) predict.py --image docs/astronaut.jpg --output $(DEMO_OUT)/astronaut_annotated.png \
		--plot $(DEMO_OUT)/astronaut_probabilities.png --csv $(DEMO_OUT)/astronaut.csv --overwrite
	@echo "annotated photo: $(DEMO_OUT)/astronaut_annotated.png, probabilities: $(DEMO_OUT)/astronaut_probabilities.png, table: $(DEMO_OUT)/astronaut.csv"

convert-demo: setup
	$(PY) convert_fer2013.py --csv $(FER_CSV) --limit 1000 --out out/convert-demo --overwrite

# what CI runs: the layering contract (pyproject.toml [tool.importlinter]), then every test, on two worker processes
# (pytest-xdist; PYTEST_WORKERS=0 runs them in this process)
PYTEST_WORKERS ?= 2
test: setup lint-imports
	$(PY) -m pytest -q -n $(PYTEST_WORKERS)

# the edit-test loop (82 s on 2 idle cores): everything but the tests marked slow (browser, X window, Spark,
# subprocess trainings, TFLite, the long training checks)
test-fast: setup
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not slow"

lint-imports: setup
	$(VENV)/bin/lint-imports

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(PREDICT_VENV) out .pytest_cache
