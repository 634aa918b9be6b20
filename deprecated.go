package gilmsg

// The option constructors' names before every option took the With prefix
// (doc.go's "Options"). They stay so that no caller breaks, each a thin
// wrapper around its new name; MIGRATING.md lists them.

import "time"

// WithPostInitWait(false) is [WithoutPostInitWait]; true, the default,
// changes nothing.
//
// Deprecated: use WithoutPostInitWait; a bare bool does not say at the call
// site what it turns on or off.
func WithPostInitWait(on bool) Option {
	if on {
		return func(o *options) { o.postInitWait = true }
	}
	return WithoutPostInitWait()
}

// WithResend is [WithResendDelays](first, most) when on, [WithoutResend]
// when not.
//
// Deprecated: use WithResendDelays or WithoutResend; a bare bool does not
// say at the call site what it turns on or off.
func WithResend(on bool, first, most time.Duration) Option {
	if on {
		return WithResendDelays(first, most)
	}
	return WithoutResend()
}

// Modname is [WithTopicModname].
//
// Deprecated: use WithTopicModname.
func Modname(m string) PublishOption { return WithTopicModname(m) }

// MsgID is [WithMsgID].
//
// Deprecated: use WithMsgID.
func MsgID(id string) PublishOption { return WithMsgID(id) }

// Username is [WithUsername].
//
// Deprecated: use WithUsername.
func Username(u string) PublishOption { return WithUsername(u) }

// ExactTopic is [WithExactTopic].
//
// Deprecated: use WithExactTopic.
func ExactTopic() PublishOption { return WithExactTopic() }

// Recipients is [WithRecipients].
//
// Deprecated: use WithRecipients.
func Recipients(cn ...string) PublishOption { return WithRecipients(cn...) }

// AckTimeout is [WithAckTimeout].
//
// Deprecated: use WithAckTimeout.
func AckTimeout(d time.Duration) PublishOption { return WithAckTimeout(d) }

// NoReplay is [WithoutReplay].
//
// Deprecated: use WithoutReplay.
func NoReplay() SubscribeOption { return WithoutReplay() }

// ReplayTimeout is [WithReplayTimeout].
//
// Deprecated: use WithReplayTimeout.
func ReplayTimeout(d time.Duration) SubscribeOption { return WithReplayTimeout(d) }

// GapMaxAge is [WithGapMaxAge].
//
// Deprecated: use WithGapMaxAge.
func GapMaxAge(d time.Duration) SubscribeOption { return WithGapMaxAge(d) }

// StatusFile is [WithStatusFile].
//
// Deprecated: use WithStatusFile.
func StatusFile(path string) SubscribeOption { return WithStatusFile(path) }

// Checkpoint is [WithCheckpoint].
//
// Deprecated: use WithCheckpoint.
func Checkpoint(name string) SubscribeOption { return WithCheckpoint(name) }

// NoValidate is [WithoutValidation].
//
// Deprecated: use WithoutValidation.
func NoValidate() SubscribeOption { return WithoutValidation() }

// SurfaceInvalid is [WithInvalidMessages].
//
// Deprecated: use WithInvalidMessages.
func SurfaceInvalid() SubscribeOption { return WithInvalidMessages() }

// NoAck is [WithoutAck].
//
// Deprecated: use WithoutAck.
func NoAck() SubscribeOption { return WithoutAck() }

// ManualAck is [WithManualAck].
//
// Deprecated: use WithManualAck.
func ManualAck() SubscribeOption { return WithManualAck() }

// Dedupe is [WithDedupe].
//
// Deprecated: use WithDedupe.
func Dedupe(n int) SubscribeOption { return WithDedupe(n) }

// Passive is [WithPassive].
//
// Deprecated: use WithPassive.
func Passive() SubscribeOption { return WithPassive() }

// FromEndpoints is [WithEndpoints].
//
// Deprecated: use WithEndpoints.
func FromEndpoints(addrs ...string) SubscribeOption { return WithEndpoints(addrs...) }

// AckAfterConsume is [WithAckAfterConsume].
//
// Deprecated: use WithAckAfterConsume.
func AckAfterConsume() RunOption { return WithAckAfterConsume() }

// StatusInterval is [WithStatusInterval].
//
// Deprecated: use WithStatusInterval.
func StatusInterval(d time.Duration) RunOption { return WithStatusInterval(d) }
