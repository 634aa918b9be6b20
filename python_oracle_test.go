package gilmsg

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// pythonOracle is what the fuzz targets judge the validator by: Python's
// verdicts on the vectors, and what each of their signatures covers, read
// from testdata alone. It uses no code under test (no ParseEnvelope, no
// canonical encoder, no decodeB64): bodies are read with encoding/json as
// Python's json module reads them, signatures with encoding/base64.
type pythonOracle struct {
	verdicts map[string]vector          // body → the vector, whose Valid and Signer Python judged
	signed   map[string][]signedContent // decoded signature → what it covers
}

type signedContent struct {
	fields map[string]any // the signed message, in pyValue form
	signer string
}

// pyInt and pyFloat keep the distinction Python's json makes: a number
// without fraction or exponent is an int (exact), any other a float, so
// 1 and 1.0 sign differently while 1e2 and 100.0 are one value. Floats are
// compared bit for bit, so that -0.0 is not 0.0.
type (
	pyInt   string
	pyFloat uint64
)

func newPythonOracle(tb testing.TB) *pythonOracle {
	tb.Helper()
	o := &pythonOracle{verdicts: map[string]vector{}, signed: map[string][]signedContent{}}
	for _, file := range []string{"vectors.jsonl", "gilmsg-compat.jsonl"} {
		for _, v := range loadVectors(tb, file) {
			o.verdicts[v.Body] = v
			if !v.Valid {
				continue
			}
			body, err := pyObject([]byte(v.Body))
			if err != nil {
				tb.Fatalf("%s: %v", v.Name, err)
			}
			sig, err := pySignature(body)
			if err != nil {
				tb.Fatalf("%s: %v", v.Name, err)
			}
			var covered map[string]any
			if v.SignedText != "" {
				// vectors.jsonl: the text Python signed, as Python wrote it.
				if covered, err = pyObject([]byte(v.SignedText)); err != nil {
					tb.Fatalf("%s: signed_text: %v", v.Name, err)
				}
			} else {
				// gilmsg-compat.jsonl: Python gilmsg signed, then added
				// gilmsg_version (WIRE.md §7).
				covered = stripped(body, fieldGilmsgVersion)
			}
			o.signed[string(sig)] = append(o.signed[string(sig)], signedContent{fields: covered, signer: v.Signer})
		}
	}
	if len(o.signed) == 0 {
		tb.Fatal("no valid vector to compare signatures with")
	}
	return o
}

// checkVerdict compares a verdict with Python's when body is a vector's
// (topic "" skips the topic frame's check).
func (o *pythonOracle) checkVerdict(topic string, body []byte, valid bool, signer string) error {
	v, ok := o.verdicts[string(body)]
	if !ok || (topic != "" && topic != v.Topic) {
		return nil
	}
	if valid != v.Valid || (valid && signer != v.Signer) {
		return fmt.Errorf("vector %s: valid %v signer %q, Python's verdict: valid %v signer %q", v.Name, valid, signer, v.Valid, v.Signer)
	}
	return nil
}

// checkValid says whether body, which validated with signer, is covered by
// a vector's signature from that signer: its content, without signature
// and certificate (and, as WIRE.md §7 allows, without gilmsg_version), is
// what the signature was made over.
func (o *pythonOracle) checkValid(body []byte, signer string) error {
	obj, err := pyObject(body)
	if err != nil {
		return fmt.Errorf("validated a body Python cannot read: %v", err)
	}
	sig, err := pySignature(obj)
	if err != nil {
		return fmt.Errorf("validated: %v", err)
	}
	cands, ok := o.signed[string(sig)]
	if !ok {
		return fmt.Errorf("validated (signer %q) with a signature no vector carries", signer)
	}
	mine, bare := stripped(obj), stripped(obj, fieldGilmsgVersion)
	for _, c := range cands {
		if c.signer == signer && (reflect.DeepEqual(c.fields, mine) || reflect.DeepEqual(c.fields, bare)) {
			return nil
		}
	}
	return fmt.Errorf("validated as %q a body no signature covers: %s", signer, body)
}

// stripped is obj without signature, certificate and the extra keys.
func stripped(obj map[string]any, drop ...string) map[string]any {
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		out[k] = v
	}
	for _, k := range append([]string{"signature", "certificate"}, drop...) {
		delete(out, k)
	}
	return out
}

// pySignature decodes the signature field as Python's b64decode does:
// characters outside the alphabet are dropped.
func pySignature(obj map[string]any) ([]byte, error) {
	s, ok := obj["signature"].(string)
	if !ok {
		return nil, fmt.Errorf("no signature string")
	}
	clean := strings.Map(func(r rune) rune {
		if strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", r) {
			return r
		}
		return -1
	}, s)
	return base64.StdEncoding.DecodeString(clean)
}

// pyObject reads a JSON object the way Python's json.loads does, as far as
// signing can tell (integers and floats apart, duplicate keys last wins).
func pyObject(text []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(text))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("text after the object")
	}
	obj, ok := pyValue(v).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not an object")
	}
	return obj, nil
}

func pyValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = pyValue(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = pyValue(e)
		}
		return v
	case json.Number:
		s := string(v)
		if !strings.ContainsAny(s, ".eE") {
			n, ok := new(big.Int).SetString(s, 10)
			if ok {
				return pyInt(n.String())
			}
		}
		f, _ := strconv.ParseFloat(s, 64) // out of range: ±Inf, as Python reads it
		return pyFloat(math.Float64bits(f))
	}
	return v
}
