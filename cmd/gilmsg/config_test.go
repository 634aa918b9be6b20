package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// configFixtures returns the repository's testdata/config as an absolute
// path. (The machine's config directories are kept out of every run by
// runCLIWith, its FEDMSG_* variables by TestMain.)
func configFixtures(t *testing.T) string {
	t.Helper()
	fixtures, err := filepath.Abs("../../testdata/config")
	if err != nil {
		t.Fatal(err)
	}
	return fixtures
}

// runConfigCmd runs gilmsg with args, as main does, with env (KEY=value)
// added to its environment, and returns the exit code and what was
// printed on stdout.
func runConfigCmd(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	ctx := withConfigSources(context.Background(), configSources{environ: append(os.Environ(), env...)})
	r := runCLIWith(t, ctx, nil, &syncBuffer{}, &syncBuffer{}, args...)
	return r.code, r.stdout
}

// topLevelKeys returns the keys of an indented JSON object in the order
// they were printed.
func topLevelKeys(out string) []string {
	var keys []string
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(line, `  "`); ok {
			key, _, _ := strings.Cut(rest, `":`)
			keys = append(keys, key)
		}
	}
	return keys
}

func TestConfigCommand(t *testing.T) {
	t.Parallel()
	fixtures := configFixtures(t)
	pythonConfig := filepath.Join(fixtures, "fedmsg-config.json")

	t.Run("prints the merged config as sorted JSON", func(t *testing.T) {
		code, out := runConfigCmd(t, nil, "config", "--config", pythonConfig)
		if code != exitOK {
			t.Fatalf("exit %d, output %q", code, out)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		endpoints, _ := got["endpoints"].(map[string]any)
		certnames, _ := got["certnames"].(map[string]any)
		for _, c := range []struct {
			what      string
			got, want any
		}{
			{"topic_prefix", got["topic_prefix"], "com.example"},
			{"gateway port", got["fedmsg.consumers.gateway.port"], 9940.0},
			{"crl_location", got["crl_location"], nil},
			{"relay_inbound", got["relay_inbound"], "tcp://127.0.0.1:2001"},
			{"endpoints", endpoints["bodhi.bodhi-backend01"], []any{"tcp://bodhi-backend01.example.org:3000", "tcp://bodhi-backend01.example.org:3001"}},
			{"certnames", certnames["shell.App01"], "shell-app01.example.org"},
			{"ack_timeout (unset)", got["ack_timeout"], nil},
		} {
			if !jsonEqual(c.got, c.want) {
				t.Errorf("%s = %#v, want %#v", c.what, c.got, c.want)
			}
		}
		keys := topLevelKeys(out)
		if len(keys) != len(got) || !slices.IsSorted(keys) {
			t.Errorf("top-level keys not printed once each in order: %q", keys)
		}
	})

	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		code    int
		outHas  string // "" for no output
		outLack string
	}{
		// Outputs of Python's fedmsg-config --query on the files behind
		// pythonConfig (testdata/config/python.d), by hand.
		{name: "query a string: bare", args: []string{"config", "--config", pythonConfig, "--query", "topic_prefix"},
			code: exitOK, outHas: "com.example\n", outLack: `"`},
		{name: "query a list: one item a line", args: []string{"config", "--config", pythonConfig, "--query", "endpoints.relay_outbound"},
			code: exitOK, outHas: "tcp://busgateway01.example.org:3999\ntcp://busgateway02.example.org:3999\n", outLack: "["},
		{name: "query relay_inbound: fedmsg's string", args: []string{"config", "--query", "relay_inbound"},
			code: exitOK, outHas: "tcp://127.0.0.1:2001\n", outLack: "["},
		{name: "query a number", args: []string{"config", "--config", pythonConfig, "--query", "logging.version"},
			code: exitOK, outHas: "1\n"},
		{name: "query a bool", args: []string{"config", "--config", pythonConfig, "--query", "sign_messages"},
			code: exitOK, outHas: "false\n"},
		{name: "query an object: indented JSON", args: []string{"config", "--config", pythonConfig, "--query", "certnames"},
			code: exitOK, outHas: "{\n  \"bodhi.bodhi-backend01\": \"bodhi-backend01.example.org\",\n"},
		{name: "query a null key fails as in fedmsg", args: []string{"config", "--query", "crl_location"}, code: exitFailure},
		{name: "query an Extra key", args: []string{"config", "--config", pythonConfig, "--query", "fedmsg.consumers.gateway.port"},
			code: exitOK, outHas: "9940\n"},
		{name: "query a missing key", args: []string{"config", "--query", "no_such_key"}, code: exitFailure},
		{name: "a directory of json, yaml and toml", args: []string{"config", "--config", filepath.Join(fixtures, "fedmsg.d"), "--query", "environment"},
			code: exitOK, outHas: "prod\n"},
		{name: "environment beats --config", env: map[string]string{"FEDMSG_ENVIRONMENT": "stg"},
			args: []string{"config", "--config", pythonConfig, "--query", "environment"}, code: exitOK, outHas: "stg\n"},
		{name: "no --config means defaults", args: []string{"config", "--query", "endpoints"},
			code: exitOK, outHas: `"relay_outbound": [`},
		{name: "flags do not leak between runs", args: []string{"config"},
			code: exitOK, outHas: `"topic_prefix": "com.example"`, outLack: "bodhi"},
		{name: "unusable config is printed, then fails", env: map[string]string{"FEDMSG_NAME": "nobody"},
			args: []string{"config"}, code: exitFailure, outHas: `"name": "nobody"`},
		{name: "a value out of range fails at load", env: map[string]string{"FEDMSG_IO_THREADS": "100000"},
			args: []string{"config"}, code: exitFailure},
		{name: "wrong type", env: map[string]string{"FEDMSG_IO_THREADS": "many"}, args: []string{"config"}, code: exitFailure},
		{name: "missing --config file", args: []string{"config", "--config", filepath.Join(fixtures, "missing.json")}, code: exitFailure},
		{name: "arguments", args: []string{"config", "extra"}, code: exitUsage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var env []string
			for k, v := range tc.env {
				env = append(env, k+"="+v)
			}
			code, out := runConfigCmd(t, env, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; output %q", code, tc.code, out)
			}
			if tc.outHas == "" && out != "" {
				t.Errorf("printed %q, want nothing", out)
			}
			if !strings.Contains(out, tc.outHas) || (tc.outLack != "" && strings.Contains(out, tc.outLack)) {
				t.Errorf("output %q: want it to contain %q and not %q", out, tc.outHas, tc.outLack)
			}
		})
	}
}

// jsonEqual compares values decoded from JSON.
func jsonEqual(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// An unknown top-level key is warned about on stderr, with its file, and
// does not fail the command; fedmsg's own keys stay silent.
func TestConfigWarnsUnknownKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "site.json")
	if err := os.WriteFile(path, []byte(`{"ack_timout": 2, "irc": [], "stomp_uri": null}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, "config", "--config", path, "--query", "topic_prefix")
	if r.code != exitOK {
		t.Errorf("exit %d, want %d", r.code, exitOK)
	}
	got := r.stderr
	if !strings.Contains(got, "warning") || !strings.Contains(got, `"ack_timout"`) || !strings.Contains(got, path) ||
		strings.Contains(got, "irc") || strings.Contains(got, "stomp") {
		t.Errorf("stderr %q: want one warning, naming ack_timout and %s", got, path)
	}
}
