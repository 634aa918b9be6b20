package gilmsg

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
)

// memoryPerByte is the documented bound (RELIABILITY.md, DefaultMaxMessageSize):
// reading a message allocates at most this many bytes per byte of it.
const memoryPerByte = 70

// bigShapes are messages made to cost the decoder the most per byte (a
// value in a map or slice is an interface, and a tiny value is two bytes
// of text), and the kinds fedmsg really carries, text and records.
var bigShapes = []struct {
	name string
	msg  func(n int) string // a JSON value of about n bytes
}{
	{"tiny keys", func(n int) string {
		var b strings.Builder
		b.WriteByte('{')
		for i := 0; b.Len() < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%x":%d`, i, i%10)
		}
		return b.String() + "}"
	}},
	{"one-digit ints", func(n int) string { return "[" + strings.Repeat("1,", n/2) + "1]" }},
	{"empty objects", func(n int) string { return "[" + strings.Repeat("{},", n/3) + "{}]" }},
	{"empty arrays", func(n int) string { return "[" + strings.Repeat("[],", n/3) + "[]]" }},
	{"empty strings", func(n int) string { return "[" + strings.Repeat(`"",`, n/3) + `""]` }},
	{"nulls", func(n int) string { return "[" + strings.Repeat("null,", n/5) + "null]" }},
	{"text", func(n int) string { return `{"comment":"` + strings.Repeat("ab\\n", n/4) + `"}` }},
	{"build records", func(n int) string {
		var b strings.Builder
		b.WriteString(`{"builds":[`)
		for i := 0; b.Len() < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"nvr":"python-pkg%d-1.2.%d-1.fc42","signed":true,"epoch":null,"id":%d}`, i, i, 2000000+i)
		}
		return b.String() + `],"user":{"name":"bodhi"}}`
	}},
}

// Reading one message, valid or not, allocates at most memoryPerByte
// times its size, whatever its shape: the figure behind the documented
// bound. Allocation bounds the peak of the live heap; the RSS also holds
// the garbage collector's headroom (GOGC, by default as much again).
func TestMessageMemoryBound(t *testing.T) {
	const size = 128 << 10
	cfg := vectorsConfig(t, "testdata/pki")
	val := NewValidator(cfg)
	signer, err := LoadSigner("testdata/pki", "shell-app01")
	if err != nil {
		t.Fatal(err)
	}
	for _, shape := range bigShapes {
		for _, signed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s signed=%v", shape.name, signed), func(t *testing.T) {
				msg, err := DecodeJSON([]byte(shape.msg(size)))
				if err != nil {
					t.Fatal(err)
				}
				fields := map[string]any{"crypto": "x509", "i": 1, "msg": msg, "msg_id": "2026-big",
					"timestamp": 1, "topic": "org.fedoraproject.dev.big", "username": "u"}
				if signed {
					if err := signer.Sign(fields); err != nil {
						t.Fatal(err)
					}
				}
				body, err := MarshalCanonical(fields)
				if err != nil {
					t.Fatal(err)
				}
				msg, fields = nil, nil
				b := &Bus{cfg: cfg, validator: val, log: slog.New(slog.DiscardHandler)}
				s := &Subscription{bus: b, validate: true, eps: []namedEndpoint{{name: "x", addr: "tcp://x:1"}}}
				frames := [][]byte{[]byte("org.fedoraproject.dev.big"), body}

				var m0, m1 runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&m0)
				m, ok, _ := s.handle(context.Background(), 0, frames)
				runtime.ReadMemStats(&m1)
				if ok != signed {
					t.Fatalf("yielded %v: want valid only when signed", ok)
				}
				runtime.KeepAlive(m)
				perByte := float64(m1.TotalAlloc-m0.TotalAlloc) / float64(len(body))
				t.Logf("%d bytes: %.1f bytes allocated per byte", len(body), perByte)
				if perByte > memoryPerByte {
					t.Errorf("%.1f bytes allocated per byte of the message, over the documented %d", perByte, memoryPerByte)
				}
			})
		}
	}
}

// After a big message the memory it took goes back to the OS within
// about a second, not minutes later: the process's RSS comes down on a
// quiet bus. Measured as the heap memory the runtime holds from the OS.
func TestMemoryHandedBackAfterBigMessage(t *testing.T) {
	n := newTestNet(t)
	raw, ep := rawPub(t)
	n.endpoints["big"] = []string{ep}
	pub := n.start(pubCN)
	sub := n.start("")
	msgs := tail(t, sub, "")
	awaitRawPeer(t, raw, pub, msgs)
	held := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapSys - ms.HeapReleased
	}
	runtime.GC()
	before := held()
	// Unsigned, so rejected once read: 2 MiB that cost about 60 times that.
	body := `{"topic":"x","msg":` + bigShapes[1].msg(2<<20) + `,"msg_id":"2026-big"}`
	if _, err := raw.SendMessage("x", body); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the big message to be read", func() bool { return sub.Stats().Invalid[ReasonUnsigned] == 1 })
	waitFor(t, "its memory handed back", func() bool { return held() < before+32<<20 })
	t.Logf("heap memory held from the OS: %d MB before, %d MB after", before>>20, held()>>20)
}
