package gilmsg

import "context"

// Announcement is the message fedmsg-announce publishes: Link is null
// when there is none.
type Announcement struct {
	Message string  `json:"message"`
	Link    *string `json:"link"`
}

// AnnounceConfig returns a copy of cfg as fedmsg-announce uses it: an
// active publisher (through relay_inbound) that signs, when sign_messages
// is set, with certnames["announce.<short hostname>"]. The routing policy
// of the bus is what restricts who may announce.
func AnnounceConfig(cfg *Config) *Config {
	c := cfg.clone()
	c.Name, c.Active, c.CertPrefix = "relay_inbound", true, "announce"
	return c
}

// Announce publishes text, and link ("" for none), as fedmsg-announce
// does: modname "announce", topic "announcement". Make the bus with
// [AnnounceConfig] to announce as fedmsg does.
func (b *Bus) Announce(ctx context.Context, text, link string) (*Receipt, error) {
	a := Announcement{Message: text}
	if link != "" {
		a.Link = &link
	}
	return b.Publish(ctx, "announcement", a, Modname("announce"))
}
