# proxy_nca_jax: `make train` runs the default job, `make test` the test suite.
# Both create the virtual environment and fetch the embedded dataset first.
# `pip install .` alone is the library (losses, proxies, evaluation, models);
# the commands need the train extra, which `make train` installs.

PYTHON ?= python3
VENV ?= .venv
WORKDIR ?= workdirs/fashion_mnist
CONFIG ?= configs/fashion_mnist.py
ARGS ?=
# pytest-xdist workers of make test / test-fast; each test module (or class)
# stays on one worker, so its shared set-up is built once.
TEST_WORKERS ?= 2
PYTEST := -m pytest -q -n $(TEST_WORKERS) --dist loadscope
FMNIST_DIR := /usr/share/datasets/fashion-mnist
DNNL_HEADER := /usr/include/oneapi/dnnl/dnnl.hpp
BIN := $(VENV)/bin
COMMA := ,
# pip's own noise (e.g. mirrors without a package) is not ours to show.
# setuptools' "Editable installation" banner is not a problem of ours.
PIP := PYTHONWARNINGS="ignore:Editable installation" \
  $(BIN)/python -m pip install -q --disable-pip-version-check

# GLYPHS-ZS (configs/glyphs.py): Debian's CJK font packages; their folders
# are configs/glyphs.py's FONT_DIRS.
GLYPH_FONT_PACKAGES := fonts-arphic-bkai00mp fonts-arphic-bsmi00lp \
  fonts-arphic-gbsn00lp fonts-arphic-gkai00mp fonts-arphic-ukai \
  fonts-arphic-uming fonts-cns11643-kai fonts-cns11643-sung fonts-cwtex-fs \
  fonts-cwtex-heib fonts-cwtex-kai fonts-cwtex-ming fonts-cwtex-yen \
  fonts-ipafont-gothic fonts-ipafont-mincho fonts-ipaexfont-gothic \
  fonts-ipaexfont-mincho fonts-ipamj-mincho fonts-hanazono \
  fonts-horai-umefont fonts-lxgw-wenkai fonts-wqy-microhei fonts-wqy-zenhei \
  fonts-noto-cjk fonts-noto-cjk-extra fonts-kouzan-mouhitsu \
  fonts-aoyagi-kouzan-t fonts-aoyagi-soseki fonts-kiloji fonts-vlgothic \
  fonts-takao-gothic fonts-takao-mincho fonts-babelstone-han \
  fonts-droid-fallback fonts-smiley-sans fonts-seto fonts-yozvox-yozfont \
  fonts-klee fonts-yusei-magic fonts-motoya-l-cedar fonts-motoya-l-maruberi \
  fonts-sawarabi-gothic fonts-sawarabi-mincho fonts-dejima-mincho \
  fonts-oradano-mincho-gsrr fonts-konatu fonts-migmix fonts-umeplus \
  fonts-unfonts-core fonts-nanum fonts-baekmuk

.PHONY: train test test-fast lint benchmark fashion-mnist test-packages glyphs-fonts clean

train: $(VENV)/.installed fashion-mnist
	$(BIN)/python -m proxy_nca_jax.train --config=$(CONFIG) \
	  --workdir=$(WORKDIR) $$(test -d $(FMNIST_DIR) || \
	  echo --config.input.download=True) $(ARGS)

test: $(VENV)/.installed-test test-packages lint
	$(BIN)/python $(PYTEST)

# The inner loop: everything but the tests marked slow (docs/testing.md).
test-fast: $(VENV)/.installed-test test-packages lint
	$(BIN)/python $(PYTEST) -m "not slow"

lint: $(VENV)/.installed-test
	$(BIN)/ruff format --check --diff .
	$(BIN)/ruff check .

benchmark: $(VENV)/.installed-benchmark fashion-mnist
	$(BIN)/python -m benchmarks.train_step_vs_pytorch --softmax_scale=8
	$(BIN)/python -m benchmarks.evaluation_at_scale

# $(call install,EXTRAS,IMPORTS): the venv (made if missing) with the
# package and its EXTRAS in one pip call, then IMPORTS checked. pip does not
# byte-compile (one file at a time); compileall does it on every core, the
# same .pyc files (unreadable ones skipped, as pip does): a fresh
# .installed-test took 69 s against 101 s on 2 cores (docs/testing.md).
define install
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip 2>/dev/null
	$(PIP) --no-compile -e ".[$(1)]" 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	$(BIN)/python -c "import $(2)"
endef

$(VENV)/.installed: setup.py
	$(call install,train,proxy_nca_jax.train)
	touch $@

# The train and test extras in one pip call (a fresh machine's make test
# saves a second resolution and import check): it also stands for
# .installed.
$(VENV)/.installed-test: setup.py
	$(call install,train$(COMMA)test,proxy_nca_jax.train$(COMMA) sklearn$(COMMA) pytest$(COMMA) xdist$(COMMA) torch$(COMMA) faiss$(COMMA) pytorch_metric_learning)
	touch $(VENV)/.installed $@

$(VENV)/.installed-benchmark: $(VENV)/.installed
	$(call install,benchmark,torch$(COMMA) pytorch_metric_learning$(COMMA) faiss)
	touch $@

# Fashion-MNIST from Debian's dataset-fashion-mnist where apt is available;
# elsewhere `make train` lets tfds download it.
fashion-mnist:
	@if [ -d $(FMNIST_DIR) ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else echo "apt-get not found: Fashion-MNIST will be downloaded by tfds."; \
	fi

# What the tests need from Debian, in one apt-get call: Fashion-MNIST, g++
# and oneDNN's headers (proxy_nca_jax/native, whose tests require its
# kernels).
test-packages:
	@missing=""; \
	[ -d $(FMNIST_DIR) ] || missing="dataset-fashion-mnist"; \
	command -v g++ >/dev/null 2>&1 || missing="$$missing g++"; \
	[ -f $(DNNL_HEADER) ] || missing="$$missing libdnnl-dev"; \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	else echo "apt-get not found: install $$missing (docs/testing.md)."; \
	fi

# The GLYPHS-ZS fonts (about 1 GB) where apt is available.
glyphs-fonts:
	@if command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq --no-install-recommends \
	    $(GLYPH_FONT_PACKAGES) >/dev/null; \
	else echo "apt-get not found: install CJK fonts and name their folders" \
	  "with --config.input.glyphs.font_dirs (see configs/glyphs.py)."; \
	fi

clean:
	rm -rf $(VENV) workdirs *.egg-info
