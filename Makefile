# batchd: two commands do all the set-up on a fresh machine.
#   make run    install what is missing, build, run the daemon on the local backend
#               (development config: state and inbox under .run/)
#   make test   install what is missing, run every test
#   make bench  time whole jobs on the local backend (scripts/bench-local.sh)
SHELL := /bin/bash
DEV_CONFIG := etc/batchd/dev.yaml

.PHONY: all setup build run test bench clean

all: build

setup:
	@scripts/setup.sh

build: setup
	swift build

run: build
	@mkdir -p .run
	@echo "batchd: drop manifests into $(CURDIR)/.run/inbox, or in another shell:"
	@echo "  .build/debug/batchctl --config $(DEV_CONFIG) submit examples/wordcount/job.yaml --wait"
	@echo "Ctrl-C stops the daemon."
	exec .build/debug/batchd --config $(DEV_CONFIG)

test: build
	swift build --build-tests
	scripts/test.sh

bench: build
	scripts/bench-local.sh

clean:
	rm -rf .build .run
