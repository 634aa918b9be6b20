// Package announce holds the two fedmsg commands that put messages on the
// bus under a host's name rather than a service's: fedmsg-announce
// ([Publish], with a bus made from [Config]), which signs as
// certnames["announce.<short hostname>"], and fedmsg-signing-relay
// ([NewSigningRelay]), which signs for publishers that cannot, as
// certnames["signing_relay"]. They are grouped because both are operator
// tools whose identity comes from certnames entries a service never uses,
// and because neither is something a Go service calls in place of
// fedmsg.publish: the root package keeps that API, and this package is
// built on it alone.
package announce

import (
	"context"
	"fmt"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// Announcement is the message fedmsg-announce publishes: Link is null
// when there is none.
type Announcement struct {
	Message string  `json:"message"`
	Link    *string `json:"link"`
}

// Config returns a copy of cfg as fedmsg-announce uses it: an active
// publisher (through relay_inbound) that signs, when sign_messages is set,
// with certnames["announce.<short hostname>"]. The routing policy of the
// bus is what restricts who may announce. A nil cfg is
// [gilmsg.DefaultConfig], as for [gilmsg.New].
func Config(cfg *gilmsg.Config) *gilmsg.Config {
	if cfg == nil {
		cfg = gilmsg.DefaultConfig()
	}
	c := cfg.Clone()
	c.Name, c.Active, c.CertPrefix = "relay_inbound", true, "announce"
	return c
}

// Publish publishes text, and link ("" for none), on bus as
// fedmsg-announce does: modname "announce", topic "announcement". Make the
// bus from [Config] to announce as fedmsg does.
func Publish(ctx context.Context, bus *gilmsg.Bus, text, link string) (*gilmsg.Receipt, error) {
	if bus == nil {
		return nil, fmt.Errorf("%w: announce.Publish needs a bus", gilmsg.ErrConfig)
	}
	a := Announcement{Message: text}
	if link != "" {
		a.Link = &link
	}
	return bus.Publish(ctx, "announcement", a, gilmsg.WithTopicModname("announce"))
}
