package devpki_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
)

var hosts = []string{"publisher01.example.org", "consumer01.example.org"}

func newPKI(t *testing.T, opts devpki.Options) *devpki.PKI {
	t.Helper()
	if opts.KeyBits == 0 {
		opts.KeyBits = 1024 // quick to make
	}
	p, err := devpki.New(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// signed is a message signed by host's key and certificate from the PKI,
// as a peer loading them from its ssldir would sign it.
func signed(t *testing.T, p *devpki.PKI, host string) *gilmsg.Envelope {
	t.Helper()
	s, err := gilmsg.LoadSigner(p.Dir, host)
	if err != nil {
		t.Fatalf("LoadSigner(%s): %v", host, err)
	}
	return signedBy(t, s, host)
}

func signedBy(t *testing.T, s *gilmsg.Signer, text string) *gilmsg.Envelope {
	t.Helper()
	fields := map[string]any{"topic": "org.example.dev.test", "msg": map[string]any{"text": text}}
	if err := s.Sign(fields); err != nil {
		t.Fatal(err)
	}
	body, err := gilmsg.MarshalCanonical(fields)
	if err != nil {
		t.Fatal(err)
	}
	env, err := gilmsg.ParseEnvelope(body)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// The root's validator, configured by Config, accepts what the PKI issued
// and refuses each certificate made to be refused, for its own reason.
func TestConfigValidates(t *testing.T) {
	p := newPKI(t, devpki.Options{Hosts: hosts})
	if err := p.IssueExpired("old01"); err != nil {
		t.Fatal(err)
	}
	if err := p.IssueRogue("rogue01"); err != nil {
		t.Fatal(err)
	}
	if err := p.Issue("gone01"); err != nil {
		t.Fatal(err)
	}
	// Signed before the revocation: the CRL, reread by a new validator, is
	// what refuses it.
	gone := signed(t, p, "gone01")
	if err := p.Revoke("gone01"); err != nil {
		t.Fatal(err)
	}
	val := gilmsg.NewValidator(p.Config())
	for _, h := range hosts {
		if signer, err := val.Validate(signed(t, p, h)); err != nil || signer != h {
			t.Errorf("%s's message: signer %q, %v", h, signer, err)
		}
	}
	for _, tc := range []struct {
		host string
		env  *gilmsg.Envelope
		want gilmsg.Reason
	}{
		{"old01", signed(t, p, "old01"), gilmsg.ReasonExpired},
		{"rogue01", signed(t, p, "rogue01"), gilmsg.ReasonCertificate},
		{"gone01", gone, gilmsg.ReasonRevoked},
	} {
		if _, err := val.Validate(tc.env); gilmsg.ReasonOf(err) != tc.want {
			t.Errorf("%s's message: %v (reason %q), want reason %q", tc.host, err, gilmsg.ReasonOf(err), tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	p := newPKI(t, devpki.Options{Hosts: hosts})
	if err := p.Issue("late01"); err != nil {
		t.Fatal(err)
	}
	c := p.Config()
	hostname, _ := os.Hostname()
	short, _, _ := strings.Cut(hostname, ".")
	checks := []struct {
		field     string
		got, want any
	}{
		{"ssldir", c.SSLDir, p.Dir},
		{"ca_cert_location", c.CACertLocation, p.CACert},
		{"crl_location", c.CRLLocation, p.CRL},
		{"sign_messages", c.SignMessages, true},
		{"validate_signatures", c.ValidateSignatures, true},
		{"topic_prefix", c.TopicPrefix, "org.example"},
		{"environment", c.Environment, "dev"},
		{"endpoints", len(c.Endpoints), 0},
		{"relay_inbound", fmt.Sprint(c.RelayInbound), fmt.Sprint(gilmsg.DefaultConfig().RelayInbound)},
		{"shell certname", c.Certnames["shell."+short], hosts[0]},
		{"late certname", c.Certnames["late01"], "late01"},
		{"gpg", slices.Contains(c.CryptoValidateBackends, "gpg"), false},
	}
	for _, h := range hosts {
		checks = append(checks, struct {
			field     string
			got, want any
		}{"certnames " + h, c.Certnames[h], h})
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.field, ck.got, ck.want)
		}
	}
	// Each call returns its own value.
	c.Certnames["x"] = "y"
	c.Endpoints["x"] = nil
	if d := p.Config(); d.Certnames["x"] != "" || d.Endpoints["x"] != nil {
		t.Error("Config shares its maps between calls")
	}
}

// cert_prefix "shell" signs as the first host: what `gilmsg logger` and a
// bus with no name use.
func TestConfigShellCertname(t *testing.T) {
	p := newPKI(t, devpki.Options{Hosts: hosts})
	cfg := p.Config()
	cfg.CertPrefix = "shell"
	cfg.Name = "relay_inbound"
	cfg.Endpoints["relay_inbound"] = []string{"tcp://127.0.0.1:*"}
	bus, err := gilmsg.New(cfg)
	if err != nil {
		t.Fatalf("New with cert_prefix shell: %v", err)
	}
	defer bus.Close()
}

func TestWriteConfig(t *testing.T) {
	p := newPKI(t, devpki.Options{Hosts: hosts})
	path := filepath.Join(t.TempDir(), "fedmsg.json")
	eps := map[string][]string{"publisher01.example.org": {"tcp://127.0.0.1:3000"}}
	if err := p.WriteConfig(path, eps); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("config is not JSON: %v", err)
	}
	for _, key := range []string{"ssldir", "ca_cert_location", "crl_location", "sign_messages", "certnames", "endpoints", "topic_prefix", "relay_inbound"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("key %q missing", key)
		}
	}
	// Read back the way a service reads its configuration.
	c, err := gilmsg.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Endpoints["publisher01.example.org"]; !slices.Equal(got, eps["publisher01.example.org"]) || len(c.Endpoints) != 1 {
		t.Errorf("endpoints = %v", c.Endpoints)
	}
	if c.Certnames["consumer01.example.org"] != "consumer01.example.org" || c.SSLDir != p.Dir || !c.SignMessages || c.CRLLocation != p.CRL {
		t.Errorf("config round trip lost fields: %+v", c)
	}
	if err := p.WriteConfig(filepath.Join(t.TempDir(), "no", "such", "dir.json"), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteConfig into a missing directory = %v, want fs.ErrNotExist", err)
	}
}

// Bad options match gilmsg.ErrConfig and say what is wrong; a directory
// that already holds a CA is left alone.
func TestNewBadOptions(t *testing.T) {
	existing := t.TempDir()
	if err := os.WriteFile(filepath.Join(existing, "ca.key"), []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		dir  string
		opts devpki.Options
		want error
		text string
	}{
		{"no hosts", "", devpki.Options{Hosts: []string{}}, gilmsg.ErrConfig, "at least one host"},
		{"path escape", "", devpki.Options{Hosts: []string{"../x"}}, gilmsg.ErrConfig, `"../x" contains a path separator`},
		{"the CA's name", "", devpki.Options{Hosts: []string{"ca"}}, gilmsg.ErrConfig, `"ca" is the CA's own`},
		{"duplicate", "", devpki.Options{Hosts: []string{"a", "a"}}, gilmsg.ErrConfig, `"a" given twice`},
		{"small key", "", devpki.Options{KeyBits: 512}, gilmsg.ErrConfig, "512 is below 1024"},
		{"huge key", "", devpki.Options{KeyBits: 100000}, gilmsg.ErrConfig, "100000 is above 8192"},
		{"negative validity", "", devpki.Options{Validity: -time.Hour}, gilmsg.ErrConfig, "-1h0m0s is negative"},
		{"existing CA", existing, devpki.Options{KeyBits: 1024}, fs.ErrExist, "already holds ca.key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir
			if dir == "" {
				dir = t.TempDir()
			}
			_, err := devpki.New(dir, tc.opts)
			if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.text) || strings.Count(fmt.Sprint(err), "gilmsg:") > 1 {
				t.Errorf("New = %v, want %v saying %q", err, tc.want, tc.text)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(existing, "ca.key")); err != nil || string(b) != "precious" {
		t.Errorf("existing ca.key was touched: %q %v", b, err)
	}
	p := newPKI(t, devpki.Options{Hosts: hosts})
	for issue, f := range map[string]func(string) error{"Issue": p.Issue, "IssueExpired": p.IssueExpired, "IssueRogue": p.IssueRogue} {
		if err := f("a/b"); !errors.Is(err, gilmsg.ErrConfig) {
			t.Errorf("%s(a/b) = %v, want ErrConfig", issue, err)
		}
	}
	if err := p.Revoke("nobody01"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Revoke(unknown) = %v, want fs.ErrNotExist", err)
	}
}

// dev keys sign and validate, from the key file and from the GnuPG home,
// each signer named by its host; Options.GPG makes them and puts them in
// Config.
func TestGPG(t *testing.T) {
	p := newPKI(t, devpki.Options{Hosts: []string{"web01", "billing01"}, GPG: true})
	d := p.GPG
	if d == nil {
		t.Fatal("Options.GPG made no keys")
	}
	if d.Home != "" {
		t.Cleanup(func() { exec.Command("gpgconf", "--homedir", d.Home, "--kill", "all").Run() })
	}
	if _, err := devpki.NewGPG(filepath.Dir(d.KeyFile), []string{"web01"}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second NewGPG in the same place: %v", err)
	}
	if _, err := devpki.NewGPG(t.TempDir(), nil); !errors.Is(err, gilmsg.ErrConfig) {
		t.Errorf("NewGPG with no host: %v, want ErrConfig", err)
	}
	if c := p.Config(); !slices.Contains(c.CryptoValidateBackends, "gpg") || len(c.GPGKeys) != 2 || c.GPGHome == "" {
		t.Errorf("Config with GPG: backends %v, gpg_keys %v, gpg_home %q", c.CryptoValidateBackends, c.GPGKeys, c.GPGHome)
	}
	homes := []string{d.KeyFile}
	if d.Home != "" {
		homes = append(homes, d.Home)
	}
	for _, home := range homes {
		cfg := gilmsg.DefaultConfig()
		d.Configure(cfg)
		cfg.GPGHome = home
		val := gilmsg.NewValidator(cfg)
		for host := range d.Keys {
			cfg.GPGSigningKey = d.Keys[host]
			s, err := gilmsg.LoadGPGSigner(cfg, "elsewhere")
			if err != nil {
				t.Fatalf("%s: %v", home, err)
			}
			if signer, err := val.Validate(signedBy(t, s, host)); err != nil || signer != host {
				t.Errorf("%s: %s's message: %q, %v", home, host, signer, err)
			}
		}
	}
}
