GO ?= go
export CGO_ENABLED := 1

.PHONY: deps demo test test-long bench fuzz vet lint

# libzmq3-dev is the one system dependency (pebbe/zmq4 uses cgo, found
# with pkg-config and built with gcc). As root, iptables too: the partition
# test cuts links between network namespaces with it (it skips without),
# and rabbitmq-server: the AMQP bridge's tests start a throwaway node of it
# (internal/testenv), never the system service.
# gnupg: the gpg backend reads GnuPG homes with the gpg binary (its tests
# skip without).
# As root, PostgreSQL too: the store tests start a throwaway cluster
# (internal/testenv; they skip without it only when not root).
# libssl-dev: RSA signs and verifies through OpenSSL's libcrypto (cgo,
# internal/rsasig); the gilmsg_purego build tag leaves it to crypto/rsa.
deps:
	@missing=""; \
	pkg-config --exists libzmq 2>/dev/null && command -v gcc >/dev/null || missing="libzmq3-dev pkg-config gcc"; \
	if [ "$$(id -u)" = 0 ] && ! command -v iptables >/dev/null; then missing="$$missing iptables"; fi; \
	if [ "$$(id -u)" = 0 ] && [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then missing="$$missing rabbitmq-server"; fi; \
	command -v gpg >/dev/null || missing="$$missing gnupg"; \
	pkg-config --exists libcrypto 2>/dev/null || missing="$$missing libssl-dev"; \
	if [ "$$(id -u)" = 0 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then missing="$$missing postgresql"; fi; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

demo: deps
	$(GO) run ./cmd/gilmsg demo

vet: deps
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "not gofmt'd: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags gilmsg_purego ./...

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint: deps
	$(GO) run $(STATICCHECK) ./...

# The second run is the pure-Go RSA path (crypto/rsa, no libcrypto): the
# tests that sign or verify, without the race detector, which the first run
# already applied to the same code.
PUREGO_TESTS ?= Valid|Sign|Python|Vector|CRL|Trust|Ack|Reliab
test: deps vet lint
	$(GO) test -race -count=1 -timeout 15m ./...
	$(GO) test -tags gilmsg_purego -count=1 -timeout 5m -run '$(PUREGO_TESTS)' . ./internal/rsasig
	$(MAKE) fuzz FUZZTIME=20000x

# Each fuzz target runs briefly in `make test`; `make test-long` runs them
# longer. Runs are counted in executions, not seconds: a run whose time ends
# while a new input is being minimised fails with "context deadline
# exceeded" (a Go fuzzing quirk). Minimising is capped too: the vectors are
# kilobytes long, and the default minute of minimising would eat a short run.
FUZZTIME ?= 20000x
FUZZPKGS ?= . ./amqpbridge ./internal/rsasig
fuzz: deps
	@for p in $(FUZZPKGS); do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
			echo "fuzz $$p $$t for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 200x $$p || exit 1; \
		done; \
	done

test-long: deps
	GILMSG_LONG=1 $(GO) test -race -count=1 -timeout 60m ./...
	$(MAKE) fuzz FUZZTIME=1000000x

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./...
