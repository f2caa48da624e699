package activitystore

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

var jsonSeeds = []string{
	`{}`, `[]`, `{"a":1}`, ` {"a" : [1, 2.5e-3, -0, true, false, null, "x\u00e9\n"]} `,
	`{"a":{"b":{"c":[[],{}]}}}`, `"s"`, `0`, `-`, `01`, `1.`, `1e`, `1e+`, `.5`, `[1,]`, `{"a":1,}`,
	`{"a"}`, `{1:2}`, `[`, `]`, `{"a":1}}`, `"\x"`, `"\u12"`, "\"\x01\"", `tru`, `nulll`, `[1 2]`,
	"{\"a\":\"\xff\xfe\"}", `{"a":"\/\b\f\r\t\\\""}`, "\t\r\n[ ]\n", `{"":""}`, `[-1.0E+10]`, `-01`,
	strings.Repeat("[", 100) + strings.Repeat("]", 100), strings.Repeat("[", 100) + strings.Repeat("]", 99),
}

// FuzzValidJSON checks that validJSON agrees with encoding/json.Valid.
func FuzzValidJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

func TestValidJSONSeeds(t *testing.T) {
	for _, s := range jsonSeeds {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%q) = %v, encoding/json says %v", s, got, want)
		}
	}
	deep := strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000)
	if !validJSON([]byte(deep)) {
		t.Error("deep nesting refused")
	}
}

// BenchmarkValidJSON compares the validator with encoding/json.Valid on
// generated details.
func BenchmarkValidJSON(b *testing.B) {
	var docs [][]byte
	for i := range 1000 {
		docs = append(docs, fmt.Appendf(nil, `{"ip":"10.%d.%d.7","status":%d,"duration_ms":%d.%d,"request_id":"req-%08x",`+
			`"user_agent":"Mozilla/5.0 (X11; Linux x86_64) client/%d","message":"deployed model %d to \"prod\" in region",`+
			`"region":"eu-west-%d","tags":["a","b",%d],"ok":true,"retry":null}`, i%256, i%17, 200+i%5, i*7%1000, i%10, i*2654435761, i%9, i, i%3, i))
	}
	var n int64
	for _, d := range docs {
		n += int64(len(d))
	}
	b.Run("validJSON", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(n)
		for range b.N {
			for _, d := range docs {
				if !validJSON(d) {
					b.Fatal("invalid")
				}
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(n)
		for range b.N {
			for _, d := range docs {
				if !json.Valid(d) {
					b.Fatal("invalid")
				}
			}
		}
	})
}
