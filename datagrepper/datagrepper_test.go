package datagrepper

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
)

func TestReplayTopic(t *testing.T) {
	for _, tc := range []struct{ full, modname, topic string }{
		{"org.fedoraproject.prod.bodhi.update.request", "bodhi", "update.request"},
		{"org.fedoraproject.prod.git.receive", "git", "receive"},
		{"org.fedoraproject.prod.bodhi", "", ""},
		{"org.fedoraproject.prod.bodhi.", "", ""},
		{"", "", ""},
	} {
		modname, topic, err := ReplayTopic(tc.full)
		if modname != tc.modname || topic != tc.topic || (err == nil) != (tc.modname != "") {
			t.Errorf("ReplayTopic(%q) = %q, %q, %v", tc.full, modname, topic, err)
		}
	}
}

func TestFetchFailures(t *testing.T) {
	testenv.CheckLeaks(t)
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("id") {
		case "junk":
			w.Write([]byte("<html>"))
		case "empty":
			w.Write([]byte(`{"topic": "a.b.c.d.e"}`))
		case "hang":
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		default:
			http.Error(w, "no", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	defer close(hang)
	defer srv.CloseClientConnections()

	for id, want := range map[string]string{"junk": "not JSON", "empty": "no topic and msg", "other": "status 500"} {
		_, _, err := Fetch(context.Background(), srv.Client(), srv.URL, id)
		var de *Error
		if !errors.As(err, &de) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an Error saying %q", id, err, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := Fetch(ctx, srv.Client(), srv.URL, "hang")
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled fetch: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled fetch did not return")
	}
}

func TestRepublishNilBus(t *testing.T) {
	if _, err := Republish(context.Background(), nil, nil, "http://127.0.0.1:1", "x"); !errors.Is(err, gilmsg.ErrConfig) {
		t.Errorf("Republish(nil bus) = %v, want ErrConfig", err)
	}
}
