# The README's commands. Everything runs inside .venv, made here from pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fdpkit-installed
# CPU torch pinned (a CUDA build is several GB); GPU users: see README "GPU".
CONSTRAINTS ?= constraints-cpu.txt
FDPKIT_HOME ?= .fdpkit
SYNTHME := $(FDPKIT_HOME)/synthme
PYTEST_FLAGS ?=

.PHONY: venv demo test test-unit test-notebooks test-browser lab clean-demo

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	@# opencv-contrib-python-headless replaces the plain wheel; both write cv2/, so an old venv holding
	@# the plain one loses both and gets contrib afresh from the install below
	if $(PY) -m pip show -q opencv-python-headless 2>/dev/null; then \
	  $(PY) -m pip uninstall -y -q opencv-python-headless opencv-contrib-python-headless; fi
	$(PY) -m pip install -c $(CONSTRAINTS) -e ".[dev,ray]"
	touch $(STAMP)

$(SYNTHME)/synthme.json: | $(STAMP)
	$(VENV)/bin/fdpkit synth --out $(SYNTHME)

demo: $(STAMP) $(SYNTHME)/synthme.json
	$(VENV)/bin/fdpkit report --dataset synthme --root $(SYNTHME) --out reports/synthme
	@echo "open reports/synthme/index.html"

test: test-unit test-notebooks

test-unit: $(STAMP)
	$(PY) -m pytest tests $(PYTEST_FLAGS)

test-notebooks: $(STAMP)
	FDPKIT_SMOKE=1 $(PY) -m pytest --nbval-lax notebooks $(PYTEST_FLAGS)

# Both widgets in JupyterLab driven by headless Chromium, and a screenshot of a report's index.html.
# Needs Debian's chromium (/usr/bin/chromium, or FDPKIT_CHROMIUM) and Playwright (the `browser` extra);
# screenshots go to $(BROWSER_OUT).
BROWSER_OUT ?= reports/browser
test-browser: $(STAMP)
	$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install -c $(CONSTRAINTS) -e ".[browser]"
	FDPKIT_BROWSER=1 FDPKIT_BROWSER_OUT=$(abspath $(BROWSER_OUT)) $(PY) -m pytest tests/browser -p no:cacheprovider $(PYTEST_FLAGS)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

clean-demo:
	rm -rf reports/synthme $(FDPKIT_HOME)
