package datagrepper

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// DefaultURL is where fedmsg-dg-replay looks by default.
const DefaultURL = "https://apps.fedoraproject.org/datagrepper"

// fetchTimeout bounds a fetch whose ctx has no deadline.
const fetchTimeout = 30 * time.Second

// Error is a datagrepper answer that holds no message.
type Error struct {
	URL    string
	Status int    // the HTTP status, 0 when the body is at fault
	Detail string // what was wrong
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("gilmsg: datagrepper %s: HTTP status %d", e.URL, e.Status)
	}
	return fmt.Sprintf("gilmsg: datagrepper %s: %s", e.URL, e.Detail)
}

// Unwrap returns [gilmsg.ErrInvalidMessage] for a body that is not a message.
func (e *Error) Unwrap() error {
	if e.Status != 0 {
		return nil
	}
	return gilmsg.ErrInvalidMessage
}

// Fetch asks the datagrepper at baseURL for one message
// (GET <baseURL>/id?id=<msgID>) and returns its topic and msg. The call is
// bounded: by ctx, with a default of 30s when ctx has no deadline, and to
// [gilmsg.DefaultMaxMessageSize] bytes of answer. client nil means
// http.DefaultClient.
func Fetch(ctx context.Context, client *http.Client, baseURL, msgID string) (topic string, msg any, err error) {
	if client == nil {
		client = http.DefaultClient
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, fetchTimeout)
		defer cancel()
	}
	u := strings.TrimSuffix(baseURL, "/") + "/id?" + url.Values{"id": {msgID}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", nil, fmt.Errorf("%w: datagrepper URL: %w", gilmsg.ErrConfig, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", nil, fmt.Errorf("datagrepper: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, &Error{URL: u, Status: resp.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, gilmsg.DefaultMaxMessageSize+1))
	if err != nil {
		return "", nil, fmt.Errorf("datagrepper %s: %w", u, err)
	}
	if len(body) > gilmsg.DefaultMaxMessageSize {
		return "", nil, &Error{URL: u, Detail: fmt.Sprintf("answer larger than %d bytes", gilmsg.DefaultMaxMessageSize)}
	}
	v, err := gilmsg.DecodeJSON(body)
	if err != nil {
		return "", nil, &Error{URL: u, Detail: "answer is not JSON: " + err.Error()}
	}
	obj, _ := v.(map[string]any)
	topic, _ = obj["topic"].(string)
	msg, ok := obj["msg"]
	if topic == "" || !ok {
		return "", nil, &Error{URL: u, Detail: "answer has no topic and msg"}
	}
	return topic, msg, nil
}

// ReplayTopic splits a full topic as fedmsg-dg-replay does: the modname is
// its fourth dot-separated part, and the topic the parts after it
// ("bodhi" and "update.request" in org.fedoraproject.prod.bodhi.update.request).
func ReplayTopic(full string) (modname, topic string, err error) {
	parts := strings.SplitN(full, ".", 5)
	if len(parts) < 5 || parts[3] == "" || parts[4] == "" {
		return "", "", fmt.Errorf("%w: topic %q has no modname and topic after <prefix>.<environment>", gilmsg.ErrInvalidMessage, full)
	}
	return parts[3], parts[4], nil
}

// Republish fetches msgID from the datagrepper at baseURL ([Fetch]) and
// publishes its msg on bus under a fresh envelope: bus's topic prefix,
// environment, msg_id, timestamp and signature, the original's modname and
// topic ([ReplayTopic]). It refuses gilmsg ACKs (topics ending in
// .gilmsg.ack).
func Republish(ctx context.Context, bus *gilmsg.Bus, client *http.Client, baseURL, msgID string) (*gilmsg.Receipt, error) {
	if bus == nil {
		return nil, fmt.Errorf("%w: datagrepper.Republish needs a bus", gilmsg.ErrConfig)
	}
	full, msg, err := Fetch(ctx, client, baseURL, msgID)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(full, ".gilmsg.ack") {
		// Signed by this bus, it would be an ACK from this publisher for a
		// message it never received.
		return nil, fmt.Errorf("%w: topic %q is a gilmsg ACK, which only its recipient may send", gilmsg.ErrInvalidMessage, full)
	}
	modname, topic, err := ReplayTopic(full)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(topic, bus.Config().TopicPrefix) {
		// Publish would take it for a full topic.
		return nil, fmt.Errorf("%w: topic %q: its topic part starts with this bus's topic prefix, so it cannot get a fresh one", gilmsg.ErrInvalidMessage, full)
	}
	return bus.Publish(ctx, topic, msg, gilmsg.WithTopicModname(modname))
}
