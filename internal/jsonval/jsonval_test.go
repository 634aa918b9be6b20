package jsonval

import (
	"encoding/json"
	"math"
	"math/big"
	"testing"
)

func TestInt64(t *testing.T) {
	for _, tc := range []struct {
		in      any
		want    int64
		wantErr string
	}{
		{json.Number("1700000000"), 1700000000, ""},
		{json.Number("-3"), -3, ""},
		{1700000000.0, 1700000000, ""},
		{json.Number("9223372036854775808"), 0, "integer 9223372036854775808 out of range"},
		{1.5, 0, "non-integral number 1.5"},
		{math.NaN(), 0, "non-integral number NaN"},
		{9.3e18, 0, "non-integral number 9.3e+18"},
		{"5", 0, "string"},
		{nil, 0, "null"},
		{big.NewInt(1), 0, "number"},
		{[]any{}, 0, "array"},
		{map[string]any{}, 0, "object"},
		{true, 0, "boolean"},
	} {
		got, err := Int64(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Int64(%#v) = %d, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Int64(%#v) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
