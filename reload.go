package gilmsg

// Reload reads the CA certificate and the CRL again now, from their files
// or URLs, and forgets which certificates validated: what SIGHUP does to
// gilmsg's long-running commands. Without it, a changed file is noticed
// within about a second of the next validation, and a URL only after a
// failure. It returns the load's error; until a reload succeeds, messages
// then fail validation with [ReasonCA]. It is safe to call at any time.
func (v *Validator) Reload() error {
	t := v.trust
	select {
	case t.lock <- struct{}{}:
	case <-t.ctx.Done():
		return t.wrapLoadErr(ErrClosed)
	}
	defer func() { <-t.lock }()
	if err := t.load(t.ctx); err != nil {
		return err
	}
	return t.err
}
