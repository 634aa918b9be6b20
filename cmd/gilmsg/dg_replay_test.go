package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDGReplay(t *testing.T) {
	t.Parallel()
	rig := newRelayRig(t)
	// What datagrepper answers, as its /id endpoint does; 1.50 comes out
	// 1.5, as from Python's json.loads and fedmsg's dumps.
	const answer = `{"certificate": "old", "signature": "old", "i": 3, "msg": {"update": {"title": "it's-1.0"}, "agent": "someone", "n": 1.50},
		"msg_id": "2014-8909e1e9-2a46-4e53-9a0e-f5415a9bedcf", "source_name": "datanommer", "source_version": "0.6.5",
		"timestamp": 1407496046.0, "topic": "org.fedoraproject.prod.bodhi.update.request", "username": "apache"}`
	// An ACK from the archive: published again under this bus's
	// certificate, it would ACK in the operator's name.
	const ack = `{"msg": {"ack_msg_id": "2026-5d6f0b55-9a43-4c47-8f5e-2b4d5f7e8a10"}, "msg_id": "2026-ack",
		"timestamp": 1407496046.0, "topic": "org.fedoraproject.prod.gilmsg.ack"}`
	var asked string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = r.URL.String()
		if r.URL.Query().Get("id") == "2026-ack" {
			w.Write([]byte(ack))
			return
		}
		if r.URL.Path != "/dg/id" || r.URL.Query().Get("id") != "2014-8909e1e9-2a46-4e53-9a0e-f5415a9bedcf" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(answer))
	}))
	defer srv.Close()

	res := runCLI(t, nil, "dg-replay", "--config", rig.config, "--datagrepper-url", srv.URL+"/dg", "--msg-id", "2026-ack")
	if res.code != exitFailure || !strings.Contains(res.stderr, `"org.fedoraproject.prod.gilmsg.ack" is a gilmsg ACK`) {
		t.Errorf("an ACK topic: exit %d, stderr %q; want it refused, saying why", res.code, res.stderr)
	}

	// The next message on the bus is this one, not the ACK.
	res = runCLI(t, nil, "dg-replay", "--config", rig.config, "--datagrepper-url", srv.URL+"/dg",
		"--msg-id", "2014-8909e1e9-2a46-4e53-9a0e-f5415a9bedcf")
	if res.code != exitOK {
		t.Fatalf("exit %d: %s (asked %s)", res.code, res.stderr, asked)
	}
	m := next(t, rig.msgs)
	if m.Topic != "org.example.dev.bodhi.update.request" {
		t.Errorf("topic %q", m.Topic)
	}
	if m.MsgID == "2014-8909e1e9-2a46-4e53-9a0e-f5415a9bedcf" || m.Signer != "shell-localhost" {
		t.Errorf("not a fresh envelope: msg_id %q, signer %q", m.MsgID, m.Signer)
	}
	if got, want := payload(t, m), `{"agent":"someone","n":1.5,"update":{"title":"it's-1.0"}}`; got != want {
		t.Errorf("msg %s, want %s", got, want)
	}

	res = runCLI(t, nil, "dg-replay", "--config", rig.config, "--datagrepper-url", srv.URL+"/dg", "--msg-id", "2014-missing")
	if res.code != exitFailure || !strings.Contains(res.stderr, "404") {
		t.Errorf("missing message: exit %d, stderr %q", res.code, res.stderr)
	}
	if res := runCLI(t, nil, "dg-replay", "--config", rig.config); res.code != exitUsage {
		t.Errorf("without --msg-id: exit %d", res.code)
	}
}
