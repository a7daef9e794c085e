# The two commands of the README, and the pieces they are made of.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export CONTAINERS_CONF := $(CURDIR)/lab/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: demo test setup unit lint molecule images clean-lab bench

## demo: build the lab fleet and run the main job on it, then print where reports are
demo: setup
	airlift demo

## test: unit and contract tests, linters, molecule scenarios
test: setup lint unit molecule

setup:
	@VENV=$(VENV) lab/bootstrap.sh

images: setup
	airlift lab images

unit: images
	airlift lab reap
	pytest

lint: setup
	ruff check .
	yamllint --strict .
	ansible-lint

molecule: images
	airlift lab reap
	molecule test --all

clean-lab: setup
	airlift lab down

## bench: airlift against the naive playbook, side by side (after `make demo`; ~90 min on 2 cores)
bench: images
	python benchmarks/bench.py
