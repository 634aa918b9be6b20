package devpki_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
)

// A throwaway CA with two hosts, one of them revoked: a validator
// configured by PKI.Config accepts the first host's messages and refuses
// the second's.
func Example() {
	dir, err := os.MkdirTemp("", "devpki-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// 1024-bit keys because they are quick to make; the default is 2048.
	pki, err := devpki.New(dir, devpki.Options{Hosts: []string{"web01", "billing01"}, KeyBits: 1024})
	if err != nil {
		log.Fatal(err)
	}
	if err := pki.Revoke("billing01"); err != nil {
		log.Fatal(err)
	}

	val := gilmsg.NewValidator(pki.Config())
	for _, host := range pki.Hosts {
		// What a bus with this certname does to each message it publishes.
		signer, err := gilmsg.LoadSigner(pki.Dir, host)
		if err != nil {
			log.Fatal(err)
		}
		fields := map[string]any{"topic": "org.example.dev.orders.new", "msg": map[string]any{"id": 1}}
		if err := signer.Sign(fields); err != nil {
			log.Fatal(err)
		}
		body, err := gilmsg.MarshalCanonical(fields)
		if err != nil {
			log.Fatal(err)
		}
		env, err := gilmsg.ParseEnvelope(body)
		if err != nil {
			log.Fatal(err)
		}
		if who, err := val.Validate(env); err != nil {
			fmt.Printf("%s: refused (%s)\n", host, gilmsg.ReasonOf(err))
		} else {
			fmt.Printf("%s: signed by %s\n", host, who)
		}
	}
	// Output:
	// web01: signed by web01
	// billing01: refused (revoked)
}

// WriteConfig writes a fedmsg.d file that a service, or `gilmsg tail
// --config`, loads as it would the real bus's.
func ExamplePKI_WriteConfig() {
	dir, err := os.MkdirTemp("", "devpki-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	pki, err := devpki.New(filepath.Join(dir, "pki"), devpki.Options{Hosts: []string{"web01"}, KeyBits: 1024})
	if err != nil {
		log.Fatal(err)
	}
	path := filepath.Join(dir, "fedmsg.d", "dev.json")
	if err := os.Mkdir(filepath.Dir(path), 0o755); err != nil {
		log.Fatal(err)
	}
	if err := pki.WriteConfig(path, map[string][]string{"web01": {"tcp://127.0.0.1:4001"}}); err != nil {
		log.Fatal(err)
	}

	cfg, err := gilmsg.LoadConfig(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.TopicPrefix, cfg.Environment, cfg.Endpoints["web01"], cfg.Certnames["web01"], cfg.SignMessages)
	// Output: org.example dev [tcp://127.0.0.1:4001] web01 true
}
