package activitystore

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

var jsonSeeds = []string{
	`{}`, `[]`, `{"a":1}`, ` {"a" : [1, 2.5e-3, -0, true, false, null, "x\u00e9\n"]} `,
	`{"a":{"b":{"c":[[],{}]}}}`, `"s"`, `0`, `-`, `01`, `1.`, `1e`, `1e+`, `.5`, `[1,]`, `{"a":1,}`,
	`{"a"}`, `{1:2}`, `[`, `]`, `{"a":1}}`, `"\x"`, `"\u12"`, "\"\x01\"", `tru`, `nulll`, `[1 2]`,
	"{\"a\":\"\xff\xfe\"}", `{"a":"\/\b\f\r\t\\\""}`, "\t\r\n[ ]\n", `{"":""}`, `[-1.0E+10]`, `-01`,
	strings.Repeat("[", 100) + strings.Repeat("]", 100), strings.Repeat("[", 100) + strings.Repeat("]", 99),
	"{\"a\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}", "{\"a\":\"\xc3\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"\xff\":1}",
	`{"a":[{},[[]],{"b":[]}]}`, `[[],[[],[[]]]]`, `{"a":"[{"}`,
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
		checkDetailsAgrees(t, b)
	})
}

// checkDetailsAgrees checks checkDetails on b against encoding/json.Valid,
// a separate walk for the depth and utf8.Valid.
func checkDetailsAgrees(t *testing.T, b []byte) {
	t.Helper()
	valid, depth, utf8OK := checkDetails(b)
	if want := json.Valid(b); valid != want {
		t.Fatalf("checkDetails(%q) valid = %v, encoding/json says %v", b, valid, want)
	}
	if !valid {
		return
	}
	if want := refDepth(b); depth != want {
		t.Fatalf("checkDetails(%q) depth = %d, want %d", b, depth, want)
	}
	if want := utf8.Valid(b); utf8OK != want {
		t.Fatalf("checkDetails(%q) utf8 = %v, utf8.Valid says %v", b, utf8OK, want)
	}
}

// refDepth returns how deep objects and arrays nest in b, a valid JSON
// text, by counting brackets outside strings.
func refDepth(b []byte) int {
	depth, most := 0, 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
			most = max(most, depth)
		case '}', ']':
			depth--
		}
	}
	return most
}

func TestValidJSONSeeds(t *testing.T) {
	for _, s := range jsonSeeds {
		checkDetailsAgrees(t, []byte(s))
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
	run := func(name string, ok func([]byte) bool) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(n)
			for range b.N {
				for _, d := range docs {
					if !ok(d) {
						b.Fatal("invalid")
					}
				}
			}
		})
	}
	run("validJSON", validJSON)
	// What Append runs on details: validity, depth and UTF-8 in one walk.
	run("checkDetails", func(d []byte) bool { ok, depth, u := checkDetails(d); return ok && depth == 2 && u })
	run("three-walks", func(d []byte) bool { return validJSON(d) && refDepth(d) == 2 && utf8.Valid(d) })
	run("encoding/json", json.Valid)
}
