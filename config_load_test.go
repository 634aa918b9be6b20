package gilmsg

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const (
	pythonConfigFixture = "testdata/config/fedmsg-config.json"
	fedmsgDirFixture    = "testdata/config/fedmsg.d"
)

// writeConfigFiles writes name → content into a new temporary directory and
// returns it.
func writeConfigFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// mustAbs is filepath.Abs for paths that cannot fail to resolve.
func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// asConfigError asserts that err is, or wraps, a *ConfigError matching
// ErrConfig, and returns it.
func asConfigError(t *testing.T, err error) *ConfigError {
	t.Helper()
	if err == nil {
		t.Fatal("got no error, want a *ConfigError")
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ConfigError", err, err)
	}
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("error %v does not match ErrConfig", err)
	}
	return ce
}

// The file Python's fedmsg-config prints loads as is, keeping what Config
// does not know in Extra.
func TestLoadConfigPythonFixture(t *testing.T) {
	cfg, err := ConfigLoader{Files: []string{pythonConfigFixture}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	want := DefaultConfig()
	want.Endpoints = map[string][]string{
		"bodhi.bodhi-backend01": {"tcp://bodhi-backend01.example.org:3000", "tcp://bodhi-backend01.example.org:3001"},
		"gilmsg.consumer01":     {"tcp://consumer01.example.org:3010", "tcp://consumer01.example.org:3011"},
		"relay_outbound":        {"tcp://busgateway01.example.org:3999", "tcp://busgateway02.example.org:3999"},
	}
	want.Certnames = map[string]string{
		"bodhi.bodhi-backend01": "bodhi-backend01.example.org",
		"gilmsg.consumer01":     "consumer01.example.org",
		"shell.App01":           "shell-app01.example.org",
	}
	want.RoutingPolicy = map[string][]string{
		"com.example.dev.bodhi.update.request": {"bodhi-backend01.example.org"},
		"com.example.dev.gilmsg.ack":           {"consumer01.example.org", "shell-app01.example.org"},
	}
	extra := cfg.Extra
	cfg.Extra = nil
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("loaded\n%+v\nwant\n%+v", cfg, want)
	}

	for key, value := range map[string]any{
		"fedmsg.consumers.gateway.port":            9940.0,
		"fedmsg.consumers.gateway.high_water_mark": 1000.0,
		"irc_method":      "notice",
		"print_config":    false,
		"stomp_uri":       nil,
		"datagrepper_url": nil,
	} {
		got, ok := extra[key]
		if !ok || got != value {
			t.Errorf("Extra[%q] = %#v (present %v), want %#v", key, got, ok, value)
		}
	}
	if irc, ok := extra["irc"].([]any); !ok || len(irc) != 1 {
		t.Errorf("Extra[irc] = %#v, want a list of one", extra["irc"])
	}
	logging, _ := extra["logging"].(map[string]any)
	if logging["version"] != 1.0 {
		t.Errorf("Extra[logging][version] = %#v, want 1", logging["version"])
	}
}

// The fixture fedmsg.d holds a JSON, a YAML and a TOML file, read in that
// (lexicographic) order, plus a dot file and a README that must be skipped.
func TestConfigLoaderFedmsgDir(t *testing.T) {
	cases := []struct {
		name   string
		loader ConfigLoader
	}{
		{"as a standard dir", ConfigLoader{Dirs: []string{filepath.Join(t.TempDir(), "missing"), fedmsgDirFixture}}},
		{"as an explicit dir", ConfigLoader{Files: []string{fedmsgDirFixture}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.loader.Load()
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			checks := []struct {
				what      string
				got, want any
			}{
				{"topic_prefix (json only)", cfg.TopicPrefix, "org.fedoraproject"},
				{"environment (yaml over json)", cfg.Environment, "prod"},
				{"name (json)", cfg.Name, "gilmsg.consumer01"},
				{"endpoints (yaml merged into json's, case kept)", cfg.Endpoints, map[string][]string{
					"relay_outbound":    {"tcp://busgateway01.example.org:3999"},
					"stale.name":        {"tcp://127.0.0.1:9999"},
					"gilmsg.consumer01": {"tcp://127.0.0.1:3010", "tcp://127.0.0.1:3011"},
					"Shell.App01":       {"tcp://127.0.0.1:3020"},
				}},
				{"certnames (case kept)", cfg.Certnames, map[string]string{
					"shell.App01":       "shell-app01.example.org",
					"gilmsg.consumer01": "consumer01.example.org",
				}},
				{"relay_inbound (list)", cfg.RelayInbound, []string{"tcp://127.0.0.1:2001", "tcp://127.0.0.1:2002"}},
				{"sign_messages", cfg.SignMessages, true},
				{"io_threads (toml over json)", cfg.IOThreads, 4},
				{"zmq_linger (toml over json)", cfg.ZMQLinger, 500},
				{"post_init_sleep (toml)", cfg.PostInitSleep, 0.25},
				{"routing_policy (toml, dotted key kept)", cfg.RoutingPolicy, map[string][]string{
					"org.fedoraproject.prod.bodhi.update.request": {"bodhi-backend01.example.org"},
				}},
				{"ssldir (relative to the json file)", cfg.SSLDir, mustAbs(t, "testdata/config/fedmsg.d/pki")},
				{"ca_cert_location (relative to the yaml file)", cfg.CACertLocation, mustAbs(t, "testdata/config/pki/ca.crt")},
				{"crl_location (URL untouched)", cfg.CRLLocation, "https://fedoraproject.org/fedmsg/crl.pem"},
				{"crl_cache (null)", cfg.CRLCache, ""},
				{"timeout (default)", cfg.Timeout, 2.0},
				{"gateway port (toml last)", cfg.Extra["fedmsg.consumers.gateway.port"], int64(9942)},
				{"irc (json)", cfg.Extra["irc"], []any{}},
				{"logging (yaml)", cfg.Extra["logging"], map[string]any{"version": 1}},
			}
			for _, c := range checks {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s = %#v, want %#v", c.what, c.got, c.want)
				}
			}
		})
	}
}

// Later sources win key by key: later files in a dir, later dirs, explicit
// files, then the environment.
func TestConfigLoaderOrder(t *testing.T) {
	cases := []struct {
		name    string
		dirs    []map[string]string
		files   map[string]string // written into their own dir, loaded in name order
		environ []string
		want    string // the resulting topic_prefix
	}{
		{
			name: "lexicographic, not by format",
			dirs: []map[string]string{{"a.toml": `topic_prefix = "toml"`, "b.json": `{"topic_prefix": "json"}`}},
			want: "json",
		},
		{
			name: "lexicographic, not numeric",
			dirs: []map[string]string{{"9-x.yaml": "topic_prefix: nine", "10-x.yml": "topic_prefix: ten"}},
			want: "nine",
		},
		{
			name: "later dir wins",
			dirs: []map[string]string{{"z.json": `{"topic_prefix": "first"}`}, {"a.json": `{"topic_prefix": "second"}`}},
			want: "second",
		},
		{
			name:  "explicit file beats dirs",
			dirs:  []map[string]string{{"a.json": `{"topic_prefix": "dir"}`}},
			files: map[string]string{"explicit.yaml": "topic_prefix: explicit"},
			want:  "explicit",
		},
		{
			name:    "environment beats everything",
			dirs:    []map[string]string{{"a.json": `{"topic_prefix": "dir"}`}},
			files:   map[string]string{"explicit.json": `{"topic_prefix": "explicit"}`},
			environ: []string{"FEDMSG_TOPIC_PREFIX=env"},
			want:    "env",
		},
		{
			name: "a file without the key keeps the earlier value",
			dirs: []map[string]string{{"a.json": `{"topic_prefix": "kept"}`, "b.json": `{"environment": "prod"}`}},
			want: "kept",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var l ConfigLoader
			for _, files := range tc.dirs {
				l.Dirs = append(l.Dirs, writeConfigFiles(t, files))
			}
			if tc.files != nil {
				dir := writeConfigFiles(t, tc.files)
				for _, name := range slices.Sorted(maps.Keys(tc.files)) {
					l.Files = append(l.Files, filepath.Join(dir, name))
				}
			}
			l.Environ = tc.environ
			cfg, err := l.Load()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.TopicPrefix != tc.want {
				t.Errorf("topic_prefix = %q, want %q", cfg.TopicPrefix, tc.want)
			}
		})
	}
}

// python.d holds two files whose endpoints, certnames, routing_policy and
// logging overlap; fedmsg-config.json is what Python's fedmsg-config printed
// for the same two files (see testdata/config/regen-fedmsg-config.sh).
// Loading the files must give what loading Python's merged output gives.
func TestConfigLoaderMergesAsFedmsg(t *testing.T) {
	got, err := ConfigLoader{Dirs: []string{"testdata/config/python.d"}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	want, err := ConfigLoader{Files: []string{pythonConfigFixture}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	// fedmsg's load_config adds this derived key; it is not in the files.
	delete(want.Extra, "topic_prefix_re")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged files\n%+v\nPython's fedmsg-config\n%+v", got, want)
	}
	// The keys that show the merge, spelled out.
	if len(got.Endpoints) != 3 || len(got.Certnames) != 3 || len(got.RoutingPolicy) != 2 {
		t.Errorf("endpoints %v, certnames %v, routing_policy %v: want 3, 3 and 2 entries merged from both files",
			got.Endpoints, got.Certnames, got.RoutingPolicy)
	}
}

// Objects merge at every depth; anything else replaces; the merged files
// replace a default object as a whole, as fedmsg's load_config does.
func TestConfigLoaderMergeRules(t *testing.T) {
	dir := writeConfigFiles(t, map[string]string{
		"a.json": `{"endpoints": {"a": ["tcp://h:1"], "b": ["tcp://h:2"]},
			"logging": {"version": 1, "handlers": {"console": {"level": "INFO", "stream": "x"}}},
			"relay_inbound": ["tcp://h:3", "tcp://h:4"], "irc": {"x": 1}, "stomp_uri": {"a": 1}}`,
		"b.yaml": "endpoints:\n  b: tcp://h:5\nlogging:\n  handlers:\n    console:\n      level: DEBUG\n" +
			"relay_inbound: tcp://h:6\nirc: [1]\nstomp_uri: s\n",
	})
	cfg, err := ConfigLoader{Dirs: []string{dir}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"endpoints merged, default relay_outbound gone", cfg.Endpoints,
			map[string][]string{"a": {"tcp://h:1"}, "b": {"tcp://h:5"}}},
		{"logging merged at depth 3", cfg.Extra["logging"], map[string]any{"version": 1.0,
			"handlers": map[string]any{"console": map[string]any{"level": "DEBUG", "stream": "x"}}}},
		{"a list replaced by a string", cfg.RelayInbound, []string{"tcp://h:6"}},
		{"an object replaced by a list", cfg.Extra["irc"], []any{1}},
		{"an object replaced by a string", cfg.Extra["stomp_uri"], "s"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.what, c.got, c.want)
		}
	}
}

// Values that can be judged alone (addresses, backends, CA and CRL URLs,
// gpg_keys) are refused at load, naming the file, and the entry for
// endpoints and gpg_keys.
func TestConfigLoadBadValuesNameFile(t *testing.T) {
	dir := writeConfigFiles(t, map[string]string{
		"a.json": `{"endpoints": {"good": ["tcp://h:1"]}, "crl_location": "http://crl.example.org/crl.pem"}`,
		"b.yaml": "endpoints:\n  bad: tcp://h\nrelay_inbound: [\"h:2001\"]\ncrypto_validate_backends: [x509, pgp]\n",
		"c.json": `{"gpg_keys": {"good": "0123456789ABCDEF", "short": "89ABCDEF"}}`,
	})
	_, err := ConfigLoader{Dirs: []string{dir}}.Load()
	want := map[string]string{
		"endpoints":                "b.yaml",
		"relay_inbound":            "b.yaml",
		"crypto_validate_backends": "b.yaml",
		"crl_location":             "a.json",
		"gpg_keys":                 "c.json",
	}
	got := map[string]string{}
	for _, e := range strings.Split(err.Error(), "\n") {
		for key, file := range want {
			if strings.Contains(e, fmt.Sprintf("key %q", key)) && strings.Contains(e, filepath.Join(dir, file)) {
				got[key] = file
			}
		}
	}
	if len(got) != len(want) || !strings.Contains(err.Error(), `"bad"`) ||
		!strings.Contains(err.Error(), `"short": "89ABCDEF"`) || strings.Contains(err.Error(), `"good"`) {
		t.Errorf("error %q: want each of %v named with its file, the endpoint \"bad\" and the gpg_keys entry \"short\"", err, want)
	}
}

// A bad entry of a merged object is blamed on the file it came from.
func TestConfigMergedErrorNamesFile(t *testing.T) {
	dir := writeConfigFiles(t, map[string]string{
		"a.json": `{"endpoints": {"bad": [5]}}`,
		"b.json": `{"endpoints": {"good": ["tcp://h:1"]}}`,
	})
	_, err := ConfigLoader{Dirs: []string{dir}}.Load()
	ce := asConfigError(t, err)
	if ce.Key != "endpoints" || ce.File != filepath.Join(dir, "a.json") || !strings.Contains(ce.Error(), "[bad][0]") {
		t.Errorf("error %q (key %q, file %q): want key endpoints, file a.json, entry [bad][0]", ce, ce.Key, ce.File)
	}
}

// A value out of its key's range is refused when loaded, naming the key
// and the file (or the variable) it came from.
func TestConfigLoadLimits(t *testing.T) {
	cases := []struct {
		key, file string
		environ   []string
	}{
		{"io_threads", `{"io_threads": 100000}`, nil},
		{"ack_timeout", `{"ack_timeout": 0}`, nil},
		{"ack_timeout", `{"ack_timeout": 9.3e9}`, nil},
		{"zmq_linger", "zmq_linger: -2\n", nil},
		{"zmq_send_wait", `{"zmq_send_wait": 2000000}`, nil}, // a publish would wait as long
		{"crl_cache_expiry", `{}`, []string{"FEDMSG_CRL_CACHE_EXPIRY=-1"}},
	}
	for _, tc := range cases {
		t.Run(tc.key+" "+tc.file, func(t *testing.T) {
			name := "a.json"
			if !strings.HasPrefix(tc.file, "{") {
				name = "a.yaml"
			}
			dir := writeConfigFiles(t, map[string]string{name: tc.file})
			_, err := ConfigLoader{Dirs: []string{dir}, Environ: tc.environ}.Load()
			ce := asConfigError(t, err)
			if ce.Key != tc.key {
				t.Errorf("error %q names key %q, want %q", ce, ce.Key, tc.key)
			}
			if tc.environ == nil && ce.File != filepath.Join(dir, name) {
				t.Errorf("error %q names file %q, want %q", ce, ce.File, filepath.Join(dir, name))
			}
			if tc.environ != nil && !strings.Contains(ce.Error(), "FEDMSG_CRL_CACHE_EXPIRY") {
				t.Errorf("error %q does not name the variable", ce)
			}
		})
	}
}

// A key neither Config nor fedmsg knows is kept but warned about, with its
// file; fedmsg's own keys for its other parts load silently.
func TestConfigUnknownKeys(t *testing.T) {
	dir := writeConfigFiles(t, map[string]string{"a.json": `{"ack_timout": 1, "irc": [], "irc_method": "notice",
		"stomp_uri": "x", "fedmsg.consumers.gateway.port": 1, "logging": {}, "topic_prefix_re": "x",
		"moksha.livesocket.backend": "w", "srv_endpoints": []}`})
	var warned []*ConfigError
	cfg, err := ConfigLoader{Dirs: []string{dir}, Warn: func(e *ConfigError) { warned = append(warned, e) }}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(warned) != 1 || warned[0].Key != "ack_timout" || warned[0].File != filepath.Join(dir, "a.json") {
		t.Errorf("warnings %v: want one, for ack_timout in a.json", warned)
	}
	if got := cfg.UnknownKeys(); !slices.Equal(got, []string{"ack_timout"}) {
		t.Errorf("UnknownKeys() = %q, want [ack_timout]", got)
	}
	if cfg.Extra["ack_timout"] != 1.0 {
		t.Errorf("Extra[ack_timout] = %v, want it kept", cfg.Extra["ack_timout"])
	}
}

// The rule for fedmsg's directories: one that does not exist is skipped
// (nothing is configured there); one that exists but cannot be read is an
// error naming it, never a configuration silently loaded in part.
func TestConfigLoaderDirRule(t *testing.T) {
	notADir := filepath.Join(writeConfigFiles(t, map[string]string{"file": "x"}), "file")
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := (ConfigLoader{Dirs: []string{missing}}).Load(); err != nil {
		t.Errorf("a missing dir: %v, want it skipped", err)
	}
	_, err := ConfigLoader{Dirs: []string{missing, notADir}}.Load()
	if ce := asConfigError(t, err); ce.File != notADir {
		t.Errorf("an unreadable dir: error %q names %q, want %q", ce, ce.File, notADir)
	}
}

func TestConfigLoaderEnviron(t *testing.T) {
	fileDir := writeConfigFiles(t, map[string]string{"a.json": `{"ssldir": "from-file"}`})
	cases := []struct {
		name    string
		environ []string
		check   func(*Config) (got, want any)
	}{
		{"plain string", []string{"FEDMSG_TOPIC_PREFIX=org.fedoraproject"},
			func(c *Config) (any, any) { return c.TopicPrefix, "org.fedoraproject" }},
		{"number text for a string key stays text", []string{"FEDMSG_ENVIRONMENT=5"},
			func(c *Config) (any, any) { return c.Environment, "5" }},
		{"quoted JSON string", []string{`FEDMSG_ENVIRONMENT="stg"`},
			func(c *Config) (any, any) { return c.Environment, "stg" }},
		{"JSON object", []string{`FEDMSG_ENDPOINTS={"Svc.Host01": ["tcp://h:1", "tcp://h:2"]}`},
			func(c *Config) (any, any) {
				return c.Endpoints, map[string][]string{"Svc.Host01": {"tcp://h:1", "tcp://h:2"}}
			}},
		{"bool", []string{"FEDMSG_SIGN_MESSAGES=true"},
			func(c *Config) (any, any) { return c.SignMessages, true }},
		{"int", []string{"FEDMSG_IO_THREADS=3"},
			func(c *Config) (any, any) { return c.IOThreads, 3 }},
		{"string for a list", []string{"FEDMSG_RELAY_INBOUND=tcp://127.0.0.1:2999"},
			func(c *Config) (any, any) { return c.RelayInbound, []string{"tcp://127.0.0.1:2999"} }},
		{"relative path is not resolved", []string{"FEDMSG_SSLDIR=pki"},
			func(c *Config) (any, any) { return c.SSLDir, "pki" }},
		{"unknown key goes to Extra", []string{"FEDMSG_IRC_METHOD=notice"},
			func(c *Config) (any, any) { return c.Extra["irc_method"], "notice" }},
		{"other variables ignored", []string{"HOME=/x", "FEDMSG_=x", "fedmsg_topic_prefix=lower", "TOPIC_PREFIX=y", "NOEQUALS"},
			func(c *Config) (any, any) {
				return c.AsMap(), mustLoad(t, ConfigLoader{Dirs: []string{fileDir}}).AsMap()
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ConfigLoader{Dirs: []string{fileDir}, Environ: tc.environ}.Load()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tc.check(cfg); !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, want %#v", got, want)
			}
		})
	}

	t.Run("wrong type names the variable", func(t *testing.T) {
		_, err := ConfigLoader{Environ: []string{"FEDMSG_IO_THREADS=many"}}.Load()
		ce := asConfigError(t, err)
		if ce.Key != "io_threads" || ce.File != "" || !strings.Contains(err.Error(), "FEDMSG_IO_THREADS") {
			t.Errorf("error %q: Key %q File %q, want io_threads, no file, and the variable named", err, ce.Key, ce.File)
		}
	})
}

func mustLoad(t *testing.T, l ConfigLoader) *Config {
	t.Helper()
	cfg, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The variants fedmsg accepts, in every format.
func TestParseConfigAccepts(t *testing.T) {
	cases := []struct {
		name, format, doc string
		check             func(*Config) (got, want any)
	}{
		{"relay_inbound string", "json", `{"relay_inbound": "tcp://h:1"}`,
			func(c *Config) (any, any) { return c.RelayInbound, []string{"tcp://h:1"} }},
		{"relay_inbound list", "yaml", "relay_inbound: [tcp://h:1, tcp://h:2]",
			func(c *Config) (any, any) { return c.RelayInbound, []string{"tcp://h:1", "tcp://h:2"} }},
		{"endpoints string value", "toml", "[endpoints]\n\"a.B\" = \"tcp://h:1\"",
			func(c *Config) (any, any) { return c.Endpoints, map[string][]string{"a.B": {"tcp://h:1"}} }},
		{"null name", "json", `{"name": null}`,
			func(c *Config) (any, any) { return c.Name, "" }},
		{"null ca_cert_cache", "json", `{"ca_cert_cache": null}`,
			func(c *Config) (any, any) { return c.CACertCache, "" }},
		{"null crl_location", "yaml", "crl_location: null",
			func(c *Config) (any, any) { return c.CRLLocation, "" }},
		{"routing_policy string is a list of one", "json", `{"routing_policy": {"t": "cn"}}`,
			func(c *Config) (any, any) { return c.RoutingPolicy, map[string][]string{"t": {"cn"}} }},
		{"persistent_store any", "json", `{"persistent_store": {"kind": "sqlite"}}`,
			func(c *Config) (any, any) { return c.PersistentStore, map[string]any{"kind": "sqlite"} }},
		{"whole float for an int", "json", `{"io_threads": 2.0}`,
			func(c *Config) (any, any) { return c.IOThreads, 2 }},
		{"int for a float", "toml", "ack_timeout = 1",
			func(c *Config) (any, any) { return c.AckTimeout, 1.0 }},
		{"yml alias", "yml", "environment: stg",
			func(c *Config) (any, any) { return c.Environment, "stg" }},
		{"empty document", "json", "  \n",
			func(c *Config) (any, any) { return c, DefaultConfig() }},
		{"yaml non-string keys", "yaml", "irc_color_lookup: {1: one}",
			func(c *Config) (any, any) { return c.Extra["irc_color_lookup"], map[string]any{"1": "one"} }},
		{"dotted key is one key", "json", `{"fedmsg.consumers.gateway.port": 9940}`,
			func(c *Config) (any, any) { return c.Extra["fedmsg.consumers.gateway.port"], 9940.0 }},
		{"keys are case-sensitive", "json", `{"Topic_Prefix": "x"}`,
			func(c *Config) (any, any) {
				return []any{c.TopicPrefix, c.Extra["Topic_Prefix"]}, []any{"com.example", "x"}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.doc), tc.format)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tc.check(cfg); !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, want %#v", got, want)
			}
		})
	}
}

// A value of the wrong type is an error naming its key and file.
func TestConfigWrongTypes(t *testing.T) {
	cases := []struct {
		key, file, content string
	}{
		{"topic_prefix", "a.json", `{"topic_prefix": 5}`},
		{"environment", "a.yaml", "environment: [dev]"},
		{"endpoints", "a.json", `{"endpoints": "x"}`},
		{"endpoints", "a.json", `{"endpoints": {"svc": [5]}}`},
		{"endpoints", "a.toml", "endpoints = [\"tcp://h:1\"]"},
		{"relay_inbound", "a.json", `{"relay_inbound": 5}`},
		{"io_threads", "a.json", `{"io_threads": "many"}`},
		{"io_threads", "a.json", `{"io_threads": 1.5}`},
		{"zmq_linger", "a.yaml", "zmq_linger: true"},
		{"sign_messages", "a.json", `{"sign_messages": "yes"}`},
		{"sign_messages", "a.yaml", "sign_messages: yes"},
		{"active", "a.json", `{"active": 1}`},
		{"certnames", "a.json", `{"certnames": {"shell.App01": 1}}`},
		{"certnames", "a.json", `{"certnames": []}`},
		{"routing_policy", "a.json", `{"routing_policy": {"t": 5}}`},
		{"crypto_validate_backends", "a.json", `{"crypto_validate_backends": {"x509": true}}`},
		{"timeout", "a.toml", `timeout = "2"`},
		{"ack_timeout", "a.json", `{"ack_timeout": false}`},
		{"ssldir", "a.json", `{"ssldir": ["/etc"]}`},
	}
	for _, tc := range cases {
		t.Run(tc.key+"/"+tc.content, func(t *testing.T) {
			dir := writeConfigFiles(t, map[string]string{tc.file: tc.content})
			_, err := ConfigLoader{Dirs: []string{dir}}.Load()
			ce := asConfigError(t, err)
			if ce.Key != tc.key || ce.File != filepath.Join(dir, tc.file) {
				t.Errorf("Key %q File %q, want %q in %q (error: %v)", ce.Key, ce.File, tc.key, tc.file, err)
			}
			if !strings.Contains(err.Error(), "want ") {
				t.Errorf("error %q does not say what was wanted", err)
			}
		})
	}

	t.Run("a wrong element is located", func(t *testing.T) {
		_, err := ParseConfig([]byte(`{"endpoints": {"Svc.A": ["tcp://h:1", 5]}}`), "json")
		asConfigError(t, err)
		if want := "[Svc.A][1]: want a string, got the number 5"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	})
	t.Run("every wrong key is reported", func(t *testing.T) {
		_, err := ParseConfig([]byte(`{"io_threads": "x", "topic_prefix": 1}`), "json")
		asConfigError(t, err)
		for _, key := range []string{`"io_threads"`, `"topic_prefix"`} {
			if !strings.Contains(err.Error(), key) {
				t.Errorf("error %q does not name %s", err, key)
			}
		}
	})
}

// Files that cannot be read or parsed are errors naming the file.
func TestConfigLoaderFileErrors(t *testing.T) {
	dir := writeConfigFiles(t, map[string]string{
		"bad.json":   `{"topic_prefix": `,
		"bad.yaml":   "topic_prefix: [unclosed",
		"bad.toml":   "topic_prefix = ",
		"list.json":  `["not", "an", "object"]`,
		"config.ini": "topic_prefix = x",
	})
	cases := []struct {
		name string
		file string
		is   error
	}{
		{"missing", filepath.Join(dir, "missing.json"), fs.ErrNotExist},
		{"bad json", filepath.Join(dir, "bad.json"), nil},
		{"bad yaml", filepath.Join(dir, "bad.yaml"), nil},
		{"bad toml", filepath.Join(dir, "bad.toml"), nil},
		{"not an object", filepath.Join(dir, "list.json"), nil},
		{"unknown extension", filepath.Join(dir, "config.ini"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ConfigLoader{Files: []string{tc.file}}.Load()
			ce := asConfigError(t, err)
			if ce.File != tc.file || ce.Key != "" {
				t.Errorf("File %q Key %q, want %q and no key (error: %v)", ce.File, ce.Key, tc.file, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not match %v", err, tc.is)
			}
		})
	}

	t.Run("bad file in a standard dir", func(t *testing.T) {
		_, err := ConfigLoader{Dirs: []string{dir}}.Load()
		if ce := asConfigError(t, err); ce.File != filepath.Join(dir, "bad.json") {
			t.Errorf("File %q, want the first bad file in order, bad.json", ce.File)
		}
	})
	t.Run("ParseConfig unknown format", func(t *testing.T) {
		_, err := ParseConfig([]byte(`{}`), "ini")
		asConfigError(t, err)
	})
}

// LoadConfig reads ./fedmsg.d, ~/.fedmsg.d and the process environment.
func TestLoadConfigStandardSources(t *testing.T) {
	home := writeConfigFiles(t, nil)
	if err := os.Mkdir(filepath.Join(home, ".fedmsg.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(filepath.Join(home, ".fedmsg.d", "a.json"), `{"topic_prefix": "home", "environment": "stg", "io_threads": 2}`)
	cwd := writeConfigFiles(t, nil)
	if err := os.Mkdir(filepath.Join(cwd, "fedmsg.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(filepath.Join(cwd, "fedmsg.d", "a.yaml"), "topic_prefix: cwd\nenvironment: prod")
	explicit := filepath.Join(cwd, "explicit.toml")
	writeFile(explicit, `environment = "explicit"`)

	t.Setenv("HOME", home)
	t.Chdir(cwd)
	t.Setenv("FEDMSG_IO_THREADS", "7")

	cfg, err := LoadConfig(explicit)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TopicPrefix != "cwd" || cfg.Environment != "explicit" || cfg.IOThreads != 7 {
		t.Errorf("topic_prefix %q environment %q io_threads %d, want cwd, explicit, 7", cfg.TopicPrefix, cfg.Environment, cfg.IOThreads)
	}
}

// AsMap's JSON loads back into the same configuration.
func TestConfigAsMapRoundTrip(t *testing.T) {
	for _, path := range []string{pythonConfigFixture, fedmsgDirFixture} {
		t.Run(path, func(t *testing.T) {
			cfg := mustLoad(t, ConfigLoader{Files: []string{path}})
			first, err := json.Marshal(cfg.AsMap())
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseConfig(first, "json")
			if err != nil {
				t.Fatal(err)
			}
			second, err := json.Marshal(again.AsMap())
			if err != nil {
				t.Fatal(err)
			}
			if string(first) != string(second) {
				t.Errorf("round trip changed the config:\n%s\n%s", first, second)
			}
			if path == pythonConfigFixture && !reflect.DeepEqual(cfg, again) {
				// JSON in, JSON out: even Extra's numbers keep their type.
				t.Errorf("round trip: got\n%+v\nwant\n%+v", again, cfg)
			}
		})
	}
}

func TestConfigAsMap(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Extra = map[string]any{"irc": []any{}, "topic_prefix": "shadowed"}
	m := cfg.AsMap()

	for key, want := range map[string]any{
		"topic_prefix":     "com.example",
		"crl_location":     nil,
		"ca_cert_cache":    nil,
		"persistent_store": nil,
		"relay_inbound":    "tcp://127.0.0.1:2001", // fedmsg's type
		"irc":              []any{},
		"io_threads":       1,
	} {
		got, ok := m[key]
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("AsMap()[%q] = %#v (present %v), want %#v", key, got, ok, want)
		}
	}
	for _, key := range []string{"name", "cert_prefix", "mute", "ack_timeout"} {
		if _, ok := m[key]; ok {
			t.Errorf("AsMap() has %q, which is unset", key)
		}
	}
	// Every key of WIRE.md §8 that has a default, and gilmsg's own.
	for _, key := range []string{
		"topic_prefix", "environment", "endpoints", "active", "relay_inbound",
		"sign_messages", "validate_signatures", "crypto_backend", "crypto_validate_backends",
		"ssldir", "certnames", "ca_cert_location", "ca_cert_cache", "ca_cert_cache_expiry",
		"crl_location", "crl_cache", "crl_cache_expiry", "routing_policy", "routing_nitpicky",
		"io_threads", "post_init_sleep", "high_water_mark", "zmq_enabled", "zmq_strict",
		"zmq_linger", "zmq_tcp_keepalive", "zmq_tcp_keepalive_cnt", "zmq_tcp_keepalive_idle",
		"zmq_tcp_keepalive_intvl", "zmq_reconnect_ivl", "zmq_reconnect_ivl_max", "timeout",
		"persistent_store", "skip_last_message",
	} {
		if _, ok := m[key]; !ok {
			t.Errorf("AsMap() lacks %q", key)
		}
	}

	m["endpoints"].(map[string][]string)["relay_outbound"][0] = "changed"
	cfg.RelayInbound = append(cfg.RelayInbound, "tcp://127.0.0.1:2002")
	cfg.AsMap()["relay_inbound"].([]string)[0] = "changed"
	if cfg.Endpoints["relay_outbound"][0] == "changed" || cfg.RelayInbound[0] == "changed" {
		t.Error("changing AsMap's result changed the Config")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	cases := []struct {
		name   string
		change func(*Config)
		key    string // "" for valid
	}{
		{"ipc and inproc addresses", func(c *Config) {
			c.Endpoints["a"] = []string{"ipc:///tmp/a", "inproc://b", "tcp://*:4001", "tcp://[::1]:*"}
		}, ""},
		{"name in endpoints", func(c *Config) { c.Name = "relay_outbound" }, ""},
		{"active name needs no endpoint", func(c *Config) { c.Name = "shell"; c.Active = true }, ""},
		{"infinite linger", func(c *Config) { c.ZMQLinger = -1 }, ""},
		{"no scheme", func(c *Config) { c.Endpoints["a"] = []string{"127.0.0.1:4001"} }, "endpoints"},
		{"no port", func(c *Config) { c.Endpoints["a"] = []string{"tcp://host"} }, "endpoints"},
		{"bad port", func(c *Config) { c.Endpoints["a"] = []string{"tcp://host:70000"} }, "endpoints"},
		{"port zero", func(c *Config) { c.Endpoints["a"] = []string{"tcp://host:0"} }, "endpoints"},
		{"no host", func(c *Config) { c.Endpoints["a"] = []string{"tcp://:4001"} }, "endpoints"},
		{"udp", func(c *Config) { c.Endpoints["a"] = []string{"udp://host:4001"} }, "endpoints"},
		{"white space", func(c *Config) { c.Endpoints["a"] = []string{"tcp://host :4001"} }, "endpoints"},
		{"empty ipc", func(c *Config) { c.Endpoints["a"] = []string{"ipc://"} }, "endpoints"},
		{"bad relay_inbound", func(c *Config) { c.RelayInbound = []string{"x"} }, "relay_inbound"},
		{"active without relay", func(c *Config) { c.Active = true; c.RelayInbound = nil }, "relay_inbound"},
		{"name not in endpoints", func(c *Config) { c.Name = "bodhi.app01" }, "name"},
		{"name without address", func(c *Config) { c.Name = "a"; c.Endpoints["a"] = nil }, "endpoints"},
		{"io_threads 0", func(c *Config) { c.IOThreads = 0 }, "io_threads"},
		{"io_threads that abort libzmq", func(c *Config) { c.IOThreads = 100000 }, "io_threads"},
		{"ack_timeout 0, unset: the default", func(c *Config) { c.AckTimeout = 0 }, ""},
		{"ack_timeout past a Duration", func(c *Config) { c.AckTimeout = 9.3e9 }, "ack_timeout"},
		{"timeout past a Duration", func(c *Config) { c.Timeout = 1e10 }, "timeout"},
		{"keepalive 2", func(c *Config) { c.ZMQTCPKeepalive = 2 }, "zmq_tcp_keepalive"},
		{"io_threads 256", func(c *Config) { c.IOThreads = 256 }, ""},
		{"timeout 0", func(c *Config) { c.Timeout = 0 }, ""},
		{"zmq_linger -2", func(c *Config) { c.ZMQLinger = -2 }, "zmq_linger"},
		{"high_water_mark < 0", func(c *Config) { c.HighWaterMark = -1 }, "high_water_mark"},
		{"ack_timeout < 0", func(c *Config) { c.AckTimeout = -0.1 }, "ack_timeout"},
		{"timeout NaN", func(c *Config) { c.Timeout = math.NaN() }, "timeout"},
		{"post_init_sleep infinite", func(c *Config) { c.PostInitSleep = math.Inf(1) }, "post_init_sleep"},
		{"gpg signing without gpg_home", func(c *Config) { c.SignMessages = true; c.CryptoBackend = "gpg" }, "gpg_home"},
		{"gpg signing", func(c *Config) { c.SignMessages = true; c.CryptoBackend = "gpg"; c.GPGHome = "/h" }, ""},
		{"unknown signing backend", func(c *Config) { c.SignMessages = true; c.CryptoBackend = "pgp" }, "crypto_backend"},
		{"unknown validating backend", func(c *Config) { c.CryptoValidateBackends = []string{"x509", "GPG"} }, "crypto_validate_backends"},
		{"gpg validation", func(c *Config) { c.CryptoValidateBackends = []string{"gpg", "x509"} }, ""},
		{"validation without CA", func(c *Config) { c.CACertLocation = "" }, "ca_cert_location"},
		{"http CA", func(c *Config) { c.CACertLocation = "http://example.org/ca.crt" }, "ca_cert_location"},
		{"ftp CRL", func(c *Config) { c.CRLLocation = "ftp://example.org/crl.pem" }, "crl_location"},
		{"gpg_keys short key id", func(c *Config) { c.GPGKeys = map[string]string{"app01": "0xDEADBEEF"} }, "gpg_keys"},
		{"gpg_keys not hex", func(c *Config) { c.GPGKeys = map[string]string{"app01": "app01@example.org"} }, "gpg_keys"},
		{"gpg_keys long key id and spaced fingerprint", func(c *Config) {
			c.GPGKeys = map[string]string{"a": "0x0123456789abcdef", "b": "0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567"}
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.change(cfg)
			err := cfg.Validate()
			if tc.key == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if ce := asConfigError(t, err); ce.Key != tc.key {
				t.Errorf("error %q names key %q, want %q", err, ce.Key, tc.key)
			}
		})
	}
}

func TestConfigErrorMessage(t *testing.T) {
	cause := errors.New("want a string, got the number 5")
	cases := []struct {
		err  *ConfigError
		want string
	}{
		{&ConfigError{Key: "topic_prefix", File: "/etc/fedmsg.d/a.json", Err: cause},
			`gilmsg: config file /etc/fedmsg.d/a.json key "topic_prefix": want a string, got the number 5`},
		{&ConfigError{Key: "io_threads", Err: cause}, `gilmsg: config key "io_threads": want a string, got the number 5`},
		{&ConfigError{File: "x.json"}, `gilmsg: config file x.json`},
		// A cause of ours leads, with one prefix.
		{&ConfigError{Key: "certnames", Err: fmt.Errorf("%w: no entry %q", ErrCannotSign, "tailer01")},
			`gilmsg: cannot sign: no entry "tailer01" (config key "certnames")`},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
		if !errors.Is(tc.err, ErrConfig) {
			t.Errorf("%v does not match ErrConfig", tc.err)
		}
		if tc.err.Err != nil && !errors.Is(tc.err, tc.err.Err) {
			t.Errorf("%v does not match its cause", tc.err)
		}
	}
}
