// Package localbus sets up a throwaway fedmsg bus on 127.0.0.1 for the
// runnable examples: a dev CA in a temporary directory, and buses bound on
// ports the OS picks. Real services load their configuration with
// gilmsg.LoadConfig instead.
package localbus

import (
	"fmt"
	"maps"
	"os"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
)

// Net is a local bus under construction: the PKI every bus signs with, and
// the endpoints of the buses started so far, which later buses listen to.
// It is used from one goroutine.
type Net struct {
	// PKI is the throwaway CA; each host given to [New] has a certificate
	// whose CN is its name.
	PKI *devpki.PKI

	endpoints map[string][]string
	buses     []*gilmsg.Bus
}

// New makes a CA with one certificate per host in a new temporary
// directory. 1024-bit keys keep it quick; they are for demos only.
func New(hosts ...string) (*Net, error) {
	dir, err := os.MkdirTemp("", "gilmsg-example-")
	if err != nil {
		return nil, err
	}
	pki, err := devpki.New(dir, devpki.Options{Hosts: hosts, KeyBits: 1024})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &Net{PKI: pki, endpoints: map[string][]string{}}, nil
}

// Config returns what a bus named name would be given: the PKI's settings
// (topic prefix "org.example", environment "dev", messages signed and
// validated), name bound on a free port of 127.0.0.1, and the endpoints of
// every bus started so far. An empty name makes a bus that only subscribes.
func (n *Net) Config(name string) *gilmsg.Config {
	cfg := n.PKI.Config()
	cfg.Name = name
	cfg.Endpoints = maps.Clone(n.endpoints)
	if name != "" {
		cfg.Endpoints[name] = []string{"tcp://127.0.0.1:*"}
	}
	return cfg
}

// Start joins a bus made with [Net.Config]; see [Net.Join].
func (n *Net) Start(name string, opts ...gilmsg.Option) (*gilmsg.Bus, error) {
	return n.Join(n.Config(name), opts...)
}

// Join joins a bus made with cfg, usually a [Net.Config] changed a little,
// and records its endpoint, so that buses started after it listen to it
// (those started before do not: give them gilmsg.WithEndpoints when they
// must hear it). [Net.Close] closes it.
func (n *Net) Join(cfg *gilmsg.Config, opts ...gilmsg.Option) (*gilmsg.Bus, error) {
	bus, err := gilmsg.New(cfg, opts...)
	if err != nil {
		return nil, fmt.Errorf("starting %q: %w", cfg.Name, err)
	}
	n.buses = append(n.buses, bus)
	if name := cfg.Name; name != "" && !cfg.Active {
		// Its own entry now names the port it got, as a configuration
		// with fixed ports would, for its ACK listener to connect to.
		ep := []string{bus.Endpoint()}
		cfg.Endpoints[name] = ep
		n.endpoints[name] = ep
	}
	return bus, nil
}

// Close closes every bus started, latest first, then removes the PKI.
func (n *Net) Close() {
	for i := len(n.buses) - 1; i >= 0; i-- {
		n.buses[i].Close()
	}
	os.RemoveAll(n.PKI.Dir)
}
