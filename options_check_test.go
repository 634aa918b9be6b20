package gilmsg

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestOptionsCheckTheirInput: a value an option cannot take fails New,
// naming the option, instead of changing its meaning silently.
func TestOptionsCheckTheirInput(t *testing.T) {
	for _, c := range []struct {
		opt  Option
		name string
	}{
		{WithMaxInFlight(0), "WithMaxInFlight(0)"},
		{WithMaxInFlight(-3), "WithMaxInFlight(-3)"},
		{WithMaxMessageSize(0), "WithMaxMessageSize(0)"},
		{WithMaxMessageSize(-2), "WithMaxMessageSize(-2)"},
	} {
		b, err := New(nil, c.opt)
		if err == nil {
			b.Close()
			t.Errorf("New with %s: no error", c.name)
			continue
		}
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("New with %s: %v, want ErrInvalidOption naming it", c.name, err)
		}
	}
	b, err := New(nil, WithMaxMessageSize(-1), WithMaxInFlight(1))
	if err != nil {
		t.Fatalf("New with -1 (no limit) and 1: %v", err)
	}
	b.Close()
}

// TestRelayOptionsCheckTheirInput: as TestOptionsCheckTheirInput, for
// NewRelay.
func TestRelayOptionsCheckTheirInput(t *testing.T) {
	for _, c := range []struct {
		opt  RelayOption
		name string
	}{
		{WithRelayQueue(0), "WithRelayQueue(0)"},
		{WithRelayQueue(-1), "WithRelayQueue(-1)"},
		{WithRelayQueue(1 << 32), "WithRelayQueue(4294967296)"},
		{WithRelayOutbound("gateway"), `WithRelayOutbound("gateway", [])`},
		{WithRelayOutbound("", "tcp://127.0.0.1:*"), `WithRelayOutbound("", ["tcp://127.0.0.1:*"])`},
	} {
		r, err := NewRelay(relayTestConfig(), c.opt)
		if err == nil {
			r.Close()
			t.Errorf("NewRelay with %s: no error", c.name)
			continue
		}
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("NewRelay with %s: %v, want ErrInvalidOption naming it", c.name, err)
		}
	}
	r, err := NewRelay(relayTestConfig(), WithRelayQueue(1), WithRelayOutbound("out", "tcp://127.0.0.1:*"))
	if err != nil {
		t.Fatalf("NewRelay with a queue of 1 and an outbound address: %v", err)
	}
	r.Close()
}

// TestOptionNamingRule holds every package of the module to the rule of
// doc.go's "Options": an exported function that returns an option is
// named With<Thing> (or Without<Thing>), unless it is an old name kept as
// a deprecated wrapper; and an exported function type a constructor
// configures is named Option or <Kind>Option, so that the rule sees it.
func TestOptionNamingRule(t *testing.T) {
	isOption := func(e ast.Expr) bool {
		switch e := e.(type) {
		case *ast.Ident:
			return strings.HasSuffix(e.Name, "Option")
		case *ast.SelectorExpr:
			return strings.HasSuffix(e.Sel.Name, "Option")
		}
		return false
	}
	fset := token.NewFileSet()
	constructors := 0
	for _, p := range goList(t, "./...") {
		for _, f := range slices.Concat(p.GoFiles, p.CgoFiles) {
			af, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, parser.ParseComments|parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range af.Decls {
				switch d := d.(type) {
				case *ast.FuncDecl:
					res := d.Type.Results
					if d.Recv != nil || !d.Name.IsExported() || res == nil || len(res.List) != 1 || !isOption(res.List[0].Type) {
						continue
					}
					constructors++
					if strings.HasPrefix(d.Name.Name, "With") || (d.Doc != nil && strings.Contains(d.Doc.Text(), "\nDeprecated: ")) {
						continue
					}
					t.Errorf("%s: %s.%s returns an option but is not named With...: rename it, keeping the old name as a Deprecated wrapper",
						fset.Position(d.Pos()), p.ImportPath, d.Name.Name)
				case *ast.GenDecl:
					for _, s := range d.Specs {
						ts, ok := s.(*ast.TypeSpec)
						if !ok || !ts.Name.IsExported() {
							continue
						}
						if _, isFunc := ts.Type.(*ast.FuncType); isFunc && !strings.HasSuffix(ts.Name.Name, "Option") && takesOptionsStruct(ts.Type.(*ast.FuncType)) {
							t.Errorf("%s: %s.%s is an option type not named ...Option", fset.Position(ts.Pos()), p.ImportPath, ts.Name.Name)
						}
					}
				}
			}
		}
	}
	// The rule must have seen the options it is about, or it checks nothing.
	if constructors < 40 {
		t.Errorf("found %d option constructors in the module; the check no longer recognises them", constructors)
	}
}

// takesOptionsStruct reports whether a function type has the shape of an
// option: one parameter, a pointer, and no result.
func takesOptionsStruct(ft *ast.FuncType) bool {
	if ft.Results != nil || len(ft.Params.List) != 1 || len(ft.Params.List[0].Names) > 1 {
		return false
	}
	_, ok := ft.Params.List[0].Type.(*ast.StarExpr)
	return ok
}

// TestDeprecatedOptionsDoWhatTheyDid: each old name sets what its new name
// sets, so a caller who has not renamed yet sees no change.
func TestDeprecatedOptionsDoWhatTheyDid(t *testing.T) {
	pub := func(opts ...PublishOption) (o pubOptions) {
		for _, f := range opts {
			f(&o)
		}
		return o
	}
	sub := func(opts ...SubscribeOption) (o subOptions) {
		o.ack = true
		for _, f := range opts {
			f(&o)
		}
		return o
	}
	run := func(opts ...RunOption) (o runOptions) {
		for _, f := range opts {
			f(&o)
		}
		return o
	}
	bus := func(opts ...Option) options {
		o := defaultOptions(DefaultConfig())
		o.logger = nil
		for _, f := range opts {
			f(&o)
		}
		return o
	}
	same := func(what string, old, new any) {
		t.Helper()
		if !reflect.DeepEqual(old, new) {
			t.Errorf("%s: the old name gives %+v, the new %+v", what, old, new)
		}
	}
	same("Modname", pub(Modname("m")), pub(WithTopicModname("m")))
	same("MsgID", pub(MsgID("id")), pub(WithMsgID("id")))
	same("Username", pub(Username("u")), pub(WithUsername("u")))
	same("ExactTopic", pub(ExactTopic()), pub(WithExactTopic()))
	same("Recipients", pub(Recipients("a", "b,c")), pub(WithRecipients("a", "b,c")))
	same("AckTimeout", pub(AckTimeout(time.Second)), pub(WithAckTimeout(time.Second)))
	same("NoReplay", sub(NoReplay()), sub(WithoutReplay()))
	same("ReplayTimeout", sub(ReplayTimeout(time.Second)), sub(WithReplayTimeout(time.Second)))
	same("GapMaxAge", sub(GapMaxAge(time.Minute)), sub(WithGapMaxAge(time.Minute)))
	same("StatusFile", sub(StatusFile("/s")), sub(WithStatusFile("/s")))
	same("Checkpoint", sub(Checkpoint("c")), sub(WithCheckpoint("c")))
	same("NoValidate", sub(NoValidate()), sub(WithoutValidation()))
	same("SurfaceInvalid", sub(SurfaceInvalid()), sub(WithInvalidMessages()))
	same("NoAck", sub(NoAck()), sub(WithoutAck()))
	same("ManualAck", sub(ManualAck()), sub(WithManualAck()))
	same("Dedupe", sub(Dedupe(7)), sub(WithDedupe(7)))
	same("Passive", sub(Passive()), sub(WithPassive()))
	same("FromEndpoints", sub(FromEndpoints("tcp://a:1", "tcp://b:2")), sub(WithEndpoints("tcp://a:1", "tcp://b:2")))
	same("AckAfterConsume", run(AckAfterConsume()), run(WithAckAfterConsume()))
	same("StatusInterval", run(StatusInterval(time.Second)), run(WithStatusInterval(time.Second)))
	same("WithPostInitWait(false)", bus(WithPostInitWait(false)), bus(WithoutPostInitWait()))
	same("WithPostInitWait(true)", bus(WithPostInitWait(true)), bus())
	same("WithResend(true, ...)", bus(WithResend(true, time.Second, 4*time.Second)), bus(WithResendDelays(time.Second, 4*time.Second)))
	same("WithResend(false, ...)", bus(WithResend(false, 0, 0)), bus(WithoutResend()))
	if bus(WithoutResend()).resend || bus(WithoutPostInitWait()).postInitWait {
		t.Error("WithoutResend or WithoutPostInitWait left its behaviour on")
	}
}
