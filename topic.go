package gilmsg

// FullTopic returns the full topic that [Bus.Publish] sends short on, as
// published by modname ("" for this bus's own): <topic_prefix>.<environment>.<modname>.<short>,
// or short itself when it already starts with topic_prefix. With short ""
// it is the prefix of every topic of modname (ending in a dot), for
// [Bus.Tail]:
//
//	bus.Tail(ctx, bus.FullTopic("orders", "order."))  // org.fedoraproject.prod.orders.order.*
//	bus.Tail(ctx, bus.FullTopic("orders", ""))        // everything modname orders publishes
func (b *Bus) FullTopic(modname, short string) string {
	if short == "" {
		if modname == "" {
			modname = b.modname
		}
		return b.cfg.TopicPrefix + "." + b.cfg.Environment + "." + modname + "."
	}
	return b.fullTopic(short, modname)
}
