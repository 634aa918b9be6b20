package amqpbridge

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// testdata/content_encoding.json holds what fedora-messaging 3.6.0's
// get_message makes of bodies under many content_encoding values: the
// decoded body, or the exception (ValidationError for a body its codec
// or JSON refuses, LookupError for a codec Python does not have).
type encodingCase struct {
	Encoding *string         `json:"encoding"`
	Body     string          `json:"body"`
	Decoded  json.RawMessage `json:"decoded"`
	Error    string          `json:"error"`
}

// Codecs fedora-messaging decodes that the bridge refuses, by name.
var codecsNotDecodedHere = []string{"utf-32", "shift_jis", "koi8-r", "idna"}

// FromAMQP decodes what fedora-messaging decodes, to the same body, and
// refuses the rest; an encoding it does not know is named in the reason.
func TestFromAMQPContentEncodingLikeFedoraMessaging(t *testing.T) {
	data, err := os.ReadFile("testdata/content_encoding.json")
	if err != nil {
		t.Fatal(err)
	}
	var fixture struct{ Cases []encodingCase }
	if err := json.Unmarshal(data, &fixture); err != nil {
		t.Fatal(err)
	}
	decoded := 0
	for _, c := range fixture.Cases {
		body, err := hex.DecodeString(c.Body)
		if err != nil {
			t.Fatal(err)
		}
		d := amqp.Delivery{MessageId: "x", RoutingKey: "a.b", Body: body}
		if c.Encoding != nil {
			d.ContentEncoding = *c.Encoding
		}
		in, err := FromAMQP(&d, 1<<20, time.Now())
		what := "content_encoding " + strings.TrimSpace(string(mustJSON(t, c.Encoding))) + ", body " + c.Body
		switch {
		case slices.Contains(codecsNotDecodedHere, d.ContentEncoding):
			if !errors.Is(err, ErrBadEncoding) || !strings.Contains(err.Error(), `"`+d.ContentEncoding+`"`) {
				t.Errorf("%s: got %v, want ErrBadEncoding naming it", what, err)
			}
		case c.Error == "LookupError":
			if !errors.Is(err, ErrBadEncoding) || !strings.Contains(err.Error(), `"`+d.ContentEncoding+`"`) {
				t.Errorf("%s: got %v, want ErrBadEncoding naming it (Python: %s)", what, err, c.Error)
			}
		case c.Error != "":
			if !errors.Is(err, ErrBadBody) {
				t.Errorf("%s: got %+v, %v; want ErrBadBody (Python: %s)", what, in, err, c.Error)
			}
		case err != nil:
			t.Errorf("%s: %v; fedora-messaging decodes it to %s", what, err, c.Decoded)
		default:
			decoded++
			got, _ := gilmsg.MarshalCanonical(in.Msg)
			v, err := gilmsg.DecodeJSON(c.Decoded)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := gilmsg.MarshalCanonical(v)
			if string(got) != string(want) {
				t.Errorf("%s: decoded %s, fedora-messaging %s", what, got, want)
			}
		}
	}
	if decoded < 100 {
		t.Errorf("only %d cases decoded: the fixture is not what it was", decoded)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An untrusted content_encoding is quoted, and cut, in the reason.
func TestFromAMQPContentEncodingQuoted(t *testing.T) {
	d := amqp.Delivery{MessageId: "x", RoutingKey: "a.b", Body: []byte(`{}`),
		ContentEncoding: "gz\n" + strings.Repeat("x", 250)}
	_, err := FromAMQP(&d, 1<<20, time.Now())
	if !errors.Is(err, ErrBadEncoding) || strings.Contains(err.Error(), "\n") || len(err.Error()) > 300 {
		t.Errorf("got %q, want ErrBadEncoding quoting a short prefix", err)
	}
}
