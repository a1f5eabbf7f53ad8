# Two commands on a fresh machine:   make demo    and    make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FER_CSV ?= ../shared/data/fer2013.csv.gz
DEMO_OUT ?= out/demo

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

demo: setup
	$(PY) convert_fer2013.py --csv $(FER_CSV) --limit 1000 --out $(DEMO_OUT) --overwrite
	$(PY) -c "import json,sys; m=json.load(open('$(DEMO_OUT)/meta.json')); print(json.dumps(m['counts'], indent=1))"

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) out .pytest_cache
