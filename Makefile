# The README's commands. Each creates .venv (Python 3.11 here) and installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
REPORTS ?= reports

.PHONY: demo test docs report tiny-model nano-model nano-melody clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.notebooks: pyproject.toml | $(PY)
	$(PIP) install -q -e ".[notebooks]"
	$(PY) -m ipykernel install --prefix $(VENV) --name python3 >/dev/null
	touch $@

# audiocraft 1.3.0 (MAGNeT, the masked decoder's reference) pins torch 2.1 and xformers: installed without its
# dependencies, with those its LM needs (tests/audiocraft_ref.py stands in for the rest). Test-only.
AUDIOCRAFT := audiocraft==1.3.0 einops==0.8.2 flashy==0.0.2 colorlog==6.12.0 hydra-core==1.3.8 omegaconf==2.4.0 \
	antlr4-python3-runtime==4.9.3 julius==0.2.8 num2words==0.5.14 docopt==0.6.2 torchmetrics==1.9.0 \
	lightning-utilities==0.15.3 encodec==0.1.1 av==18.1.0 sentencepiece==0.2.3

# torchaudio 2.11 (transformers' MusicgenMelodyFeatureExtractor, the chroma tests' reference) pins its own torch and
# cannot load its compiled library beside ours: installed without dependencies and with its .so files removed, it
# imports as pure Python (its loader takes a missing library as "no extension") and its Spectrogram and resample
# work. Test-only.
TORCHAUDIO := torchaudio==2.11.0

$(VENV)/.test: pyproject.toml Makefile | $(PY)
	$(PIP) install -q -e ".[notebooks,reference,dev,docs]"
	$(PIP) install -q --no-deps $(AUDIOCRAFT)
	$(PIP) install -q --no-deps $(TORCHAUDIO)
	rm -f $$($(PY) -c "import importlib.util as u, pathlib as p; print(p.Path(u.find_spec('torchaudio').origin).parent / 'lib')")/*.so
	$(PY) -m ipykernel install --prefix $(VENV) --name python3 >/dev/null
	touch $@ $(VENV)/.notebooks

## make demo: run notebooks/00_quickstart.ipynb on the bundled trained nano model -> reports/ (notebook, HTML, WAV)
demo: $(VENV)/.notebooks
	mkdir -p $(REPORTS)
	$(VENV)/bin/papermill notebooks/00_quickstart.ipynb $(REPORTS)/00_quickstart.ipynb \
		-p out_dir $(abspath $(REPORTS)) --kernel python3 --cwd notebooks --progress-bar
	$(VENV)/bin/jupyter nbconvert --to html $(REPORTS)/00_quickstart.ipynb --output-dir $(REPORTS)
	@echo "wrote $(REPORTS)/00_quickstart.ipynb, $(REPORTS)/00_quickstart.html and $(REPORTS)/*.wav"

## make report: run every notebook into reports/<notebook>/ (notebook, HTML with players, figures, WAVs,
## metrics.json), then reports/index.html linking them with their key metrics
NOTEBOOKS := $(basename $(notdir $(wildcard notebooks/*.ipynb)))
report: $(VENV)/.notebooks
	@for nb in $(NOTEBOOKS); do \
		mkdir -p $(REPORTS)/$$nb && \
		$(VENV)/bin/papermill notebooks/$$nb.ipynb $(REPORTS)/$$nb/$$nb.ipynb \
			-p out_dir $(abspath $(REPORTS))/$$nb --kernel python3 --cwd notebooks && \
		$(VENV)/bin/jupyter nbconvert --to html $(REPORTS)/$$nb/$$nb.ipynb --output-dir $(REPORTS)/$$nb \
		|| exit 1; \
	done
	$(PY) -m mglab.inspect.reports $(REPORTS)

## make test: lint (ruff), then the whole suite, parity against transformers included; its last tests build the
## documentation (as make docs does, from the notebooks the suite just executed) and open it in Chromium
test: $(VENV)/.test
	$(PY) -m ruff check mglab tests benchmarks scripts docs
	$(PY) -m pytest $(PYTEST_ARGS)

## make docs: the Sphinx site -> docs/_build/html (offline); warnings are errors, every cross-reference resolves.
## The gallery takes the notebooks' executed copies (docs/_ext/mglab_docs.py): from make test or make report, or
## executes them here at their defaults (about 4 minutes on 2 cores) when there are none
DOCS_BUILD := $(PY) -m sphinx -E -W --keep-going -n -q -b html docs docs/_build/html
docs: $(VENV)/.test
	$(DOCS_BUILD)
	@echo "wrote docs/_build/html/index.html"

## make tiny-magnet: rebuild data/models/tiny-magnet (a random audiocraft MAGNeT checkpoint, exported; seconds)
tiny-magnet: $(VENV)/.test
	$(PY) scripts/build_tiny_magnet.py --out data/models/tiny-magnet

## make nano-magnet: train nano-magnet (40-66 min on 2 cores, from nano-musicgen as at a13b50d, the bundle's parent; then the guided stage), bundle it, measure vamping and adherence (card)
NANO_MAGNET_CKPT ?= $(or $(MGLAB_CACHE),.cache)/nano-magnet-checkpoint
nano-magnet: $(VENV)/.test
	$(PY) scripts/train_nano_magnet.py --out $(NANO_MAGNET_CKPT) --parent-commit a13b50d --guided-steps 1000
	$(PY) scripts/bundle_nano_magnet.py $(NANO_MAGNET_CKPT) --out data/models/nano-magnet
	$(PY) benchmarks/vamp_nano.py --model data/models/nano-magnet --source-commit a13b50d
	$(PY) benchmarks/eval_nano.py --model data/models/nano-magnet --compare-commit a13b50d

## make tiny-model: rebuild data/models/tiny-musicgen (needs the reference extra)
tiny-model: $(VENV)/.test
	$(PY) scripts/build_tiny_model.py --out data/models/tiny-musicgen

## make nano-model: train data/models/nano-musicgen (about 40 min on 2 cores), refit the evaluator, measure it,
## then probe it and train the SAE it ships with (the folder is replaced whole: the old SAE read other weights)
nano-model: $(VENV)/.test
	$(PY) scripts/train_nano.py --out data/models/nano-musicgen
	$(PY) benchmarks/eval_nano.py --fit
	OMP_NUM_THREADS=1 $(PY) benchmarks/probe_nano.py --ship --card

## make nano-melody: train data/models/nano-melody from nano-musicgen's weights (about 50 min on 2 cores), export
## it with mglab export, measure it (the card's scores)
nano-melody: $(VENV)/.test
	$(PY) scripts/train_nano_melody.py --out data/models/nano-melody
	$(PY) benchmarks/eval_melody.py --model data/models/nano-melody --card

clean:
	rm -rf $(VENV) $(REPORTS) docs/_build docs/api/generated docs/api/flat.rst docs/gallery/*.ipynb
