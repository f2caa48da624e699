package archive

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzSplitObject checks that whatever splitObject splits is rebuilt
// exactly, "{" + `"key":value` joined by "," + "}", and that a block keeps
// such details byte for byte.
func FuzzSplitObject(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, `{"a":1,"b":"x"}`, `{"n":{"a":[1,2,{"b":"x,y}"}]},"s":"q\"uote"}`,
		`{ "spaced" : 1 }`, `{"a": 1}`, `{"a":1}}`, `{"a":[}`, `{"a":1,}`, `{"":""}`, `{"a":"\\"}`,
		`{"a":1,"a":2}`, `{"k\"":"v"}`, `[1,2]`, `{"a"}`, `{"a":}`, `{`, `}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		keys, vals, ok := splitObject(d, nil, nil)
		if !ok {
			return
		}
		require.Equal(t, len(keys), len(vals))
		rebuilt := []byte{'{'}
		for i := range keys {
			if i > 0 {
				rebuilt = append(rebuilt, ',')
			}
			require.NotEmpty(t, vals[i])
			rebuilt = append(rebuilt, '"')
			rebuilt = append(rebuilt, keys[i]...)
			rebuilt = append(rebuilt, '"', ':')
			rebuilt = append(rebuilt, vals[i]...)
		}
		rebuilt = append(rebuilt, '}')
		require.Equal(t, string(d), string(rebuilt))

		if len(d) > MaxDetails {
			return
		}
		var bb BlockBuilder
		bb.Add("GET /x", d)
		bb.Add("", []byte(`{"other":true}`))
		b, err := decodeBlock(bb.Encode(nil), 2)
		require.NoError(t, err)
		require.Equal(t, "GET /x", string(b.buf[b.off[0]:b.off[1]]))
		require.Equal(t, string(d), string(b.buf[b.off[1]:b.off[2]]))
		require.Equal(t, `{"other":true}`, string(b.buf[b.off[3]:b.off[4]]))
	})
}
