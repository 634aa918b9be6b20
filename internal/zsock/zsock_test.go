package zsock_test

import (
	"reflect"
	"testing"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/zsock"
)

// TestFromConfig: every key an Options field is tagged with is a key of
// gilmsg.Config, and its value reaches the field (a misspelt tag or a
// renamed key would leave the field 0).
func TestFromConfig(t *testing.T) {
	cfg := gilmsg.DefaultConfig()
	cfg.MaxMessageSize = 4096
	cv := reflect.ValueOf(cfg).Elem()
	want := map[string]int64{} // Options field name -> the value set
	ot := reflect.TypeOf(zsock.Options{})
	for i := range ot.NumField() {
		key := ot.Field(i).Tag.Get("fedmsg")
		if key == "" {
			continue
		}
		found := false
		for j := range cv.NumField() {
			if cv.Type().Field(j).Tag.Get("mapstructure") == key {
				v := int64(1000 + i) // a value no default has
				cv.Field(j).SetInt(v)
				want[ot.Field(i).Name] = v
				found = true
			}
		}
		if !found {
			t.Errorf("Options.%s: no Config field has key %q", ot.Field(i).Name, key)
		}
	}
	if len(want) < 11 {
		t.Fatalf("only %d fedmsg keys found on Options", len(want))
	}
	o := reflect.ValueOf(zsock.FromConfig(cfg))
	for name, v := range want {
		if got := o.FieldByName(name).Int(); got != v {
			t.Errorf("Options.%s = %d, want %d", name, got, v)
		}
	}
	if got := zsock.FromConfig(cfg).MaxMsgSize; got != 4096 {
		t.Errorf("MaxMsgSize = %d, want 4096 (max_message_size)", got)
	}
	if got := zsock.FromConfig(*cfg); got.HWM != cfg.HighWaterMark {
		t.Errorf("a Config value, not a pointer: HWM %d", got.HWM)
	}
	if got := zsock.FromConfig(nil); got != (zsock.Options{}) {
		t.Errorf("FromConfig(nil) = %+v", got)
	}
}

// TestFanoutHWMBoundsBytes: at high_water_mark 0 the queue for one peer
// holds at most DefaultFanoutBytes of messages of max_message_size,
// whatever that is (a floor of 128 made it 128 × 64 MiB = 8 GiB at 64 MiB).
func TestFanoutHWMBoundsBytes(t *testing.T) {
	for _, size := range []int64{1 << 10, 8 << 20, 64 << 20, 1 << 30, 4 << 30} {
		n := zsock.FanoutHWM(zsock.Options{MaxMsgSize: size})
		if n < 1 || (int64(n)*size > zsock.DefaultFanoutBytes && n > 1) {
			t.Errorf("max_message_size %d: %d messages, %d bytes per peer", size, n, int64(n)*size)
		}
	}
	if n := zsock.FanoutHWM(zsock.Options{HWM: 7, MaxMsgSize: 64 << 20}); n != 7 {
		t.Errorf("high_water_mark 7 gave %d", n)
	}
}
