# megha — build, test, benchmark.
#
#   make demo    start a local coordinator and submit the example job
#   make test    everything CI runs
#   make bench   benchmarks; results in benchmarks/results/*.json and benchmarks/RESULTS.md

GO       ?= go
BIN      := bin/megha
PKGS     := ./...
export CGO_ENABLED ?= 1
# go-nvml's own headers use deprecated NVML calls; their warnings are noise.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

# MinIO, for the S3 checkpoint store's tests (internal/s3test); `make minio`
# builds it into the cache once.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
export MEGHA_MINIO ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/megha/tools/minio-$(MINIO_VERSION)/minio

PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
GOBIN    := $(shell $(GO) env GOPATH)/bin

.PHONY: all build test unit fuzz bench lint proto demo clean tools minio

all: build

build:
	$(GO) build -o $(BIN) ./cmd/megha

test: build lint minio
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) fuzz FUZZTIME=10s

unit:
	$(GO) test -count=1 $(PKGS)

FUZZTIME ?= 30s
fuzz:
	$(GO) test ./jobspec -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./coordinator -run '^$$' -fuzz '^FuzzApply$$' -fuzztime $(FUZZTIME)
	$(GO) test ./lease/sim -run '^$$' -fuzz '^FuzzParseCatalog$$' -fuzztime $(FUZZTIME)
	$(GO) test ./checkpoint -run '^$$' -fuzz '^FuzzParseManifest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./checkpoint -run '^$$' -fuzz '^FuzzReadSafetensors$$' -fuzztime $(FUZZTIME)

bench: build minio
	$(GO) run ./benchmarks/cmd/meghabench -out benchmarks/results
	$(GO) run ./benchmarks/cmd/meghabench -table benchmarks/results > benchmarks/RESULTS.md

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

minio:
	@test -x "$(MEGHA_MINIO)" || GOBIN="$(dir $(MEGHA_MINIO))" CGO_ENABLED=0 $(GO) install github.com/minio/minio@$(MINIO_VERSION)

# proto regenerates api/megha/v1 from its .proto files. Needs protoc
# (Debian: protobuf-compiler), installed here if missing.
tools:
	@command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	@test -x $(GOBIN)/protoc-gen-go || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@test -x $(GOBIN)/protoc-gen-go-grpc || $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: tools
	PATH=$(GOBIN):$$PATH protoc -I api -I /usr/include \
	  --go_out=api --go_opt=paths=source_relative \
	  --go-grpc_out=api --go-grpc_opt=paths=source_relative \
	  api/megha/v1/*.proto

demo: build
	./scripts/demo.sh

clean:
	rm -rf bin
