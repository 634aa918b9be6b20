// Orders: the HTTP service a Python shop moving to Go starts with. Each
// POST /orders is published on the bus; an order of at least -big is
// published reliably, with billing's certificate CN as recipient, and
// answered 202 once billing ACKed it or 503 naming who did not.
//
// Everything else comes from the fedmsg configuration, read as fedmsg
// does (/etc/fedmsg.d, ~/.fedmsg.d, ./fedmsg.d, then -config):
// endpoints, the PKI, persistent_store (every message is stored before it
// is sent) and replay_endpoints[-name] (where tails that were down ask for
// what they missed; see tail.go, the other half of the program).
//
//	go run ./examples/orders serve -config /etc/orders.d -name shop01 -listen :8080
//	curl -d '{"id":"o-1","amount":50}' localhost:8080/orders
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/replayserver"
	_ "github.com/gilmsg/gilmsg-go/sqlstore" // opens persistent_store's sqlite:// and postgresql:// URLs
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			return runServe(args[1:])
		case "tail":
			return runTail(args[1:])
		}
	}
	return errors.New("usage: orders serve|tail [-flags]")
}

func runServe(args []string) error {
	flags := flag.NewFlagSet("orders serve", flag.ExitOnError)
	var (
		config  = flags.String("config", "", "a fedmsg config file or directory, read after the usual ones")
		name    = flags.String("name", "shop01", "this service's name: its key in endpoints and replay_endpoints")
		listen  = flags.String("listen", "127.0.0.1:8080", "HTTP address")
		billing = flags.String("billing", "billing01", "the certificate CN (not the endpoint name) that must ACK big orders")
		big     = flags.Float64("big", 1000, "orders of at least this amount wait for billing's ACK")
		wait    = flags.Duration("ack-timeout", 2*time.Second, "how long a big order waits for billing's ACK")
	)
	flags.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := loadConfig(*config)
	if err != nil {
		return err
	}
	cfg.Name = *name
	// The store is opened here rather than by New from persistent_store,
	// because the replay server reads the same one.
	st, err := gilmsg.OpenStore(ctx, cfg.StoreURL())
	if err != nil {
		return err
	}
	defer st.Close()
	bus, err := gilmsg.New(cfg, gilmsg.WithStore(st), gilmsg.WithModname("orders"))
	if err != nil {
		return err
	}
	// Close sends what is still queued (bounded by zmq_linger): a program
	// that exits without it may lose the last messages Publish accepted.
	defer bus.Close()
	replay, err := replayserver.New(cfg, *name, st, slog.Default())
	if err != nil {
		return err
	}
	defer replay.Close()
	go replay.Serve(ctx)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: handler(bus, *billing, *big, *wait)}
	go func() {
		<-ctx.Done()
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutCtx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// maxOrderBytes bounds a request body.
const maxOrderBytes = 64 << 10

func handler(bus *gilmsg.Bus, billing string, big float64, wait time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		var body json.RawMessage
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxOrderBytes)).Decode(&body); err != nil {
			http.Error(w, "bad order: "+err.Error(), http.StatusBadRequest)
			return
		}
		// Only the fields the service decides on are decoded; the body
		// goes on the wire as it came (a RawMessage), so 50 stays 50
		// where a map[string]any would send 50.0.
		var order struct {
			ID     string      `json:"id"`
			Amount json.Number `json:"amount"`
		}
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.UseNumber()
		amount := 0.0
		err := dec.Decode(&order)
		if err == nil {
			amount, err = order.Amount.Float64()
		}
		if err != nil || order.ID == "" {
			http.Error(w, `bad order: want {"id": "...", "amount": N}`, http.StatusBadRequest)
			return
		}
		var opts []gilmsg.PublishOption
		if amount >= big {
			opts = append(opts, gilmsg.WithRecipients(billing), gilmsg.WithAckTimeout(wait))
		}
		_, err = bus.Publish(r.Context(), "order.created", body, opts...)
		var timeout *gilmsg.AckTimeoutError
		switch {
		case err == nil:
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintf(w, "order %s accepted\n", order.ID)
		case errors.As(err, &timeout):
			// Sent and stored, but not confirmed: the client retries, and
			// billing deduplicates by id.
			http.Error(w, fmt.Sprintf("order %s: no ACK from %s: %v",
				order.ID, strings.Join(timeout.Missing, ", "), err), http.StatusServiceUnavailable)
		default:
			http.Error(w, fmt.Sprintf("order %s: %v", order.ID, err), http.StatusServiceUnavailable)
		}
	})
	return mux
}

// loadConfig reads fedmsg's usual config places, then file when given.
func loadConfig(file string) (*gilmsg.Config, error) {
	if file == "" {
		return gilmsg.LoadConfig()
	}
	return gilmsg.LoadConfig(file)
}
