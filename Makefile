# Two commands on a fresh machine:   make demo    and    make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FER_CSV ?= ../shared/data/fer2013.csv.gz
DEMO_OUT ?= out/demo

.PHONY: setup demo convert-demo test test-fast lint lint-imports clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

demo: setup
	mkdir -p $(DEMO_OUT)
	$(PY) -c "from skimage import data, io; io.imsave('$(DEMO_OUT)/astronaut.png', data.astronaut())"
	$(PY) predict.py --image $(DEMO_OUT)/astronaut.png --output $(DEMO_OUT)/astronaut_annotated.png \
		--plot $(DEMO_OUT)/astronaut_probabilities.png
	@echo "annotated photo: $(DEMO_OUT)/astronaut_annotated.png, probabilities: $(DEMO_OUT)/astronaut_probabilities.png"

convert-demo: setup
	$(PY) convert_fer2013.py --csv $(FER_CSV) --limit 1000 --out out/convert-demo --overwrite

# what CI runs: the layering contract (pyproject.toml [tool.importlinter]), then every test
test: setup lint-imports
	$(PY) -m pytest -q

# the edit-test loop (about 2 min on 2 cores): everything but the slow end-to-end checks
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint-imports: setup
	$(VENV)/bin/lint-imports

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) out .pytest_cache
