package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vectorsConfig writes testdata/vectors-config.json with its paths, which
// are relative to testdata/pki, made absolute.
func vectorsConfig(t *testing.T, testdata string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, "vectors-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"ca_cert_location", "crl_location"} {
		cfg[key] = filepath.Join(testdata, "pki", cfg[key].(string))
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vectors.json")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type vector struct {
	Name   string `json:"name"`
	Body   string `json:"body"`
	Valid  bool   `json:"valid"`
	Signer string `json:"signer"`
}

func TestVerifyVectors(t *testing.T) {
	t.Parallel()
	testdata, err := filepath.Abs("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	config := vectorsConfig(t, testdata)
	raw, err := os.ReadFile(filepath.Join(testdata, "vectors.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var vectors, oneLine []vector
	var bodies strings.Builder // the one-line bodies, raw
	for _, line := range lines(string(raw)) {
		var v vector
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatal(err)
		}
		vectors = append(vectors, v)
		if !strings.ContainsAny(v.Body, "\r\n") {
			oneLine = append(oneLine, v)
			bodies.WriteString(v.Body + "\n\n") // blank lines are skipped
		}
	}
	if len(oneLine) < len(vectors)/2 {
		t.Fatalf("only %d of %d bodies fit on a line", len(oneLine), len(vectors))
	}

	for _, input := range []struct {
		name    string
		text    string
		vectors []vector
	}{
		{"vector lines", string(raw), vectors},
		{"raw bodies", bodies.String(), oneLine},
	} {
		t.Run(input.name, func(t *testing.T) {
			vectors := input.vectors
			res := runCLI(t, strings.NewReader(input.text), "verify", "--config", config)
			if res.code != exitOK {
				t.Fatalf("exit %d; stderr %s", res.code, res.stderr)
			}
			got := lines(res.stdout)
			if len(got) != len(vectors) {
				t.Fatalf("%d output lines for %d vectors", len(got), len(vectors))
			}
			for i, v := range vectors {
				var out verdict
				if err := json.Unmarshal([]byte(got[i]), &out); err != nil {
					t.Fatalf("%s: bad output line %q: %v", v.Name, got[i], err)
				}
				if out.Valid != v.Valid || out.Signer != v.Signer {
					t.Errorf("%s: valid=%v signer=%q, Python says valid=%v signer=%q (%s)",
						v.Name, out.Valid, out.Signer, v.Valid, v.Signer, out.Error)
				}
				if out.Valid != (out.Error == "") || out.Valid != (out.Reason == "") {
					t.Errorf("%s: valid=%v with error %q, reason %q", v.Name, out.Valid, out.Error, out.Reason)
				}
			}
		})
	}

	t.Run("reasons and odd input", func(t *testing.T) {
		byName := map[string]vector{}
		for _, v := range vectors {
			byName[v.Name] = v
		}
		long := `{"body":"` + strings.Repeat("x", 300<<10) + `"}`
		in := strings.Join([]string{
			mustLine(t, byName["invalid/expired-cert"]),
			mustLine(t, byName["invalid/routing-policy"]),
			"   ",
			"not json at all",
			long,
			`{"body": 42}`,
			mustLine(t, byName["signed/ascii"]) + "\r", // no final newline
		}, "\n")
		res := runCLI(t, strings.NewReader(in), "verify", "--config", config)
		if res.code != exitOK {
			t.Fatalf("exit %d; stderr %s", res.code, res.stderr)
		}
		want := []verdict{
			{Reason: "expired"}, {Reason: "policy"}, {Reason: "malformed"},
			{Reason: "malformed"}, {Reason: "unsigned"}, // {"body": 42} is a body itself
			{Valid: true, Signer: "shell-app01.example.org"},
		}
		got := lines(res.stdout)
		if len(got) != len(want) {
			t.Fatalf("%d output lines, want %d:\n%s", len(got), len(want), res.stdout)
		}
		for i, w := range want {
			var out verdict
			if err := json.Unmarshal([]byte(got[i]), &out); err != nil {
				t.Fatal(err)
			}
			if out.Valid != w.Valid || out.Signer != w.Signer || out.Reason != w.Reason {
				t.Errorf("line %d: %+v, want %+v", i+1, out, w)
			}
		}
	})

	t.Run("a missing config file is a failure", func(t *testing.T) {
		res := runCLI(t, strings.NewReader("{}\n"), "verify", "--config", filepath.Join(t.TempDir(), "none.json"))
		if res.code != exitFailure || res.stdout != "" {
			t.Errorf("exit %d, stdout %q; want %d and nothing", res.code, res.stdout, exitFailure)
		}
	})

	t.Run("a missing CA leaves signed messages unjudged", func(t *testing.T) {
		missingCA := filepath.Join(t.TempDir(), "ca.json")
		if err := os.WriteFile(missingCA, []byte(`{"ca_cert_location": "/nonexistent/ca.crt"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		in := mustLine(t, vectors[0]) + "\n{}\n"
		res := runCLI(t, strings.NewReader(in), "verify", "--config", missingCA)
		got := lines(res.stdout)
		if res.code != exitFailure || len(got) != 2 ||
			!strings.Contains(got[0], `"reason":"ca"`) || !strings.Contains(got[1], `"reason":"unsigned"`) {
			t.Errorf("exit %d, stdout %q; want %d, reasons ca then unsigned", res.code, res.stdout, exitFailure)
		}
	})

	t.Run("arguments are a usage error", func(t *testing.T) {
		if res := runCLI(t, nil, "verify", "extra"); res.code != exitUsage {
			t.Errorf("exit %d, want %d", res.code, exitUsage)
		}
	})
}

func mustLine(t *testing.T, v vector) string {
	t.Helper()
	if v.Name == "" {
		t.Fatal("vector not found")
	}
	b, err := json.Marshal(map[string]string{"body": v.Body, "name": v.Name})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// verify judges gpg messages as Python's gpg backend does (gilmsg-go also
// refuses expired and revoked keys) and names the signer from gpg_keys; an
// unreadable gpg_home leaves them unjudged.
func TestVerifyGPG(t *testing.T) {
	t.Parallel()
	gpgData, err := filepath.Abs("../../testdata/gpg")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := os.ReadFile(filepath.Join(gpgData, "gpg_keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(gpgData, "vectors.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var vectors []vector
	for _, line := range lines(string(raw)) {
		var v vector
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatal(err)
		}
		vectors = append(vectors, v)
	}
	config := func(home string) string {
		path := filepath.Join(t.TempDir(), "gpg.json")
		text := `{"crypto_validate_backends": ["gpg"], "gpg_home": "` + home + `", "gpg_keys": ` + string(keys) + `}`
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	res := runCLI(t, strings.NewReader(string(raw)), "verify", "--config", config(filepath.Join(gpgData, "pubring.asc")))
	got := lines(res.stdout)
	if res.code != exitOK || len(got) != len(vectors) {
		t.Fatalf("exit %d, %d lines for %d vectors; stderr %s", res.code, len(got), len(vectors), res.stderr)
	}
	for i, v := range vectors {
		var out verdict
		if err := json.Unmarshal([]byte(got[i]), &out); err != nil {
			t.Fatal(err)
		}
		if out.Valid != v.Valid || out.Signer != v.Signer {
			t.Errorf("%s: valid=%v signer=%q, want valid=%v signer=%q (%s)", v.Name, out.Valid, out.Signer, v.Valid, v.Signer, out.Error)
		}
	}
	res = runCLI(t, strings.NewReader(mustLine(t, vectors[0])+"\n"), "verify", "--config", config("/nonexistent/gnupg"))
	if res.code != exitFailure || !strings.Contains(res.stdout, `"reason":"keyring"`) {
		t.Errorf("missing gpg_home: exit %d, stdout %q", res.code, res.stdout)
	}
}
