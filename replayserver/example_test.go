package replayserver_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/replayserver"

	zmq "github.com/pebbe/zmq4"
)

// store is a read-only [gilmsg.Store] of three messages; a program opens
// one with sqlstore.Open (the publisher's persistent_store).
type store struct{}

func (store) Append(context.Context, *gilmsg.Batch) error { return nil }
func (store) Close() error                                { return nil }
func (store) Query(_ context.Context, q *gilmsg.Query) ([]gilmsg.StoredMessage, error) {
	var out []gilmsg.StoredMessage
	for seq := int64(1); seq <= 3; seq++ {
		if q.SeqIDRange != nil && seq >= q.SeqIDRange[0] && seq <= q.SeqIDRange[1] {
			out = append(out, gilmsg.StoredMessage{SeqID: seq, Body: fmt.Appendf(nil, `{"seq_id": %d, "topic": "org.example.dev.web.page.view"}`, seq)})
		}
	}
	return out, nil
}

// A replay server answers for one publisher name on its replay_endpoints
// address; here a ZeroMQ REQ socket asks it, as a subscriber's gap
// recovery (and Python's fedmsg) does.
func ExampleServer() {
	cfg := gilmsg.DefaultConfig()
	cfg.ReplayEndpoints = map[string]string{"web01": "tcp://127.0.0.1:*"} // "*": a free port
	srv, err := replayserver.New(cfg, "web01", store{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx)

	req, err := zmq.NewSocket(zmq.REQ)
	if err != nil {
		log.Fatal(err)
	}
	defer req.Close()
	req.SetLinger(100 * time.Millisecond)
	req.SetRcvtimeo(10 * time.Second)
	req.Connect(srv.Endpoint())
	for _, q := range []string{`{"seq_id_range": [2, 5]}`, `{"seq_id": "two"}`} {
		req.Send(q, 0)
		frames, err := req.RecvMessage(0)
		if err != nil {
			log.Fatal(err)
		}
		for _, f := range frames {
			fmt.Println(f)
		}
	}
	// Output:
	// {"seq_id":2,"topic":"org.example.dev.web.page.view"}
	// {"seq_id":3,"topic":"org.example.dev.web.page.view"}
	// error: 'Something went wrong when processing the field "seq_id"'
}

// ParseQuery reads a request as the server does, before asking the
// store: its keys are OR-ed, after_seq_id pages, and what it cannot read
// is a *QueryError, answered with one "error: ..." frame.
func ExampleParseQuery() {
	q, err := replayserver.ParseQuery([]byte(`{"seq_id_range": [3, "5"], "msg_id": "2026-abc", "after_seq_id": 3}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(*q.SeqIDRange, q.MsgIDs, q.AfterSeqID)

	_, err = replayserver.ParseQuery([]byte(`{"seq_id_range": [5]}`))
	var qe *replayserver.QueryError
	fmt.Println(errors.As(err, &qe))
	// Output:
	// [3 5] [2026-abc] 3
	// true
}
