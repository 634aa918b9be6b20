package datagrepper_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/gilmsg/gilmsg-go/datagrepper"
)

// Fetch asks a datagrepper (here a stand-in answering as datagrepper's
// /id endpoint does) for one message; ReplayTopic splits its topic as
// Republish does before publishing it again.
func ExampleFetch() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"msg_id": %q, "topic": "org.fedoraproject.prod.bodhi.update.request", "msg": {"update": "FEDORA-2026-1"}}`, r.URL.Query().Get("id"))
	}))
	defer srv.Close()

	topic, msg, err := datagrepper.Fetch(context.Background(), nil, srv.URL, "2026-8909e1e9")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(topic, msg)
	modname, sub, err := datagrepper.ReplayTopic(topic)
	fmt.Println(modname, sub, err)
	// Output:
	// org.fedoraproject.prod.bodhi.update.request map[update:FEDORA-2026-1]
	// bodhi update.request <nil>
}
