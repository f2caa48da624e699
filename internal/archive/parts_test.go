package archive

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestParts reads a format 3 file part by part, as a query does: the head,
// a field's directory, one value's ordinals, the chunks with their value
// numbers and copy positions.
func TestParts(t *testing.T) {
	recs := lightRecords()
	b := writeTestFile(t, recs, 4000, 3)
	r := bytes.NewReader(b)
	ft, err := ReadFooter(r, int64(len(b)))
	require.NoError(t, err)
	n := len(recs)
	require.Equal(t, ChunkOrdinals, ft.Chunk)
	require.Len(t, ft.Chunks, (n+ft.Chunk-1)/ft.Chunk)
	rec := func(o int) testRecord { return recs[n-1-o] } // ordinals ascend, recs descend

	h, err := ft.ReadHead(r)
	require.NoError(t, err)
	for c, first := range h.Firsts {
		require.Equal(t, IDParts{rec(c * ft.Chunk).ns, rec(c * ft.Chunk).seq}, first)
	}
	require.Equal(t, IDParts{recs[0].ns, recs[0].seq}, h.Last)
	require.Equal(t, []ValueCount{{"type-0", 1667}, {"type-1", 1667}, {"type-2", 1666}}, h.Counts[0])
	require.Nil(t, h.Counts[UserField], "over CountedValues users")

	var dirs [NumFields]*Dir
	var limits [NumFields]int
	for f := range NumFields {
		dirs[f], err = ft.ReadDir(r, f)
		require.NoError(t, err)
		limits[f] = len(dirs[f].Values)
		want := map[string][]uint32{}
		for o := range n {
			v := rec(o).labels[f]
			want[v] = append(want[v], uint32(o))
		}
		require.Len(t, dirs[f].Values, len(want))
		require.IsNonDecreasing(t, dirs[f].Values)
		for v, ords := range want {
			i, ok := dirs[f].Find(v)
			require.True(t, ok, v)
			group, err := ft.ReadGroup(r, dirs[f].Group(i))
			require.NoError(t, err)
			got, err := dirs[f].Ordinals(i, group, n, nil)
			require.NoError(t, err)
			require.Equal(t, ords, got, "field %s value %s", FieldNames[f], v)
		}
		_, ok := dirs[f].Find("no such value")
		require.False(t, ok)
	}

	copies := 0
	for c := range ft.Chunks {
		ch, err := ft.ReadChunk(r, c, limits)
		require.NoError(t, err)
		require.Len(t, ch.IDs, ft.ChunkLen(c))
		for i, id := range ch.IDs {
			o := c*ft.Chunk + i
			require.Equal(t, IDParts{rec(o).ns, rec(o).seq}, id)
			for f := range NumFields {
				require.Equal(t, rec(o).labels[f], dirs[f].Values[ch.Labels[f][i]])
			}
			if p := ch.Copies[i]; p > 0 {
				copies++
				k := ft.CopyBlockAt(int(p - 1))
				blk, err := ft.ReadCopyBlock(r, k)
				require.NoError(t, err)
				j := int(p-1) - ft.Copies[k].First
				api, det := blk.Record(j)
				require.Equal(t, rec(o).apicall, string(api))
				require.Equal(t, string(rec(o).details), string(det))
				// The row beside the copy: ordinal, ID, labels but the user's.
				require.Equal(t, uint32(o), blk.Rows.Ords[j])
				require.Equal(t, IDParts{rec(o).ns, rec(o).seq}, blk.Rows.IDs[j])
				for f := range NumFields {
					if f != UserField {
						require.Equal(t, rec(o).labels[f], string(blk.Rows.Label(j, f)))
					}
				}
				// The directory says where the user's copies start.
				u := ch.Labels[UserField][i]
				at := dirs[UserField].CopyAt[u]
				require.NotZero(t, at)
				require.Equal(t, ft.CopyBlockAt(int(at-1)), k, "a user's copies share one block")
			}
		}
	}
	require.Equal(t, ft.CopyCount(), copies, "every copy belongs to one record")

	var ce *CorruptError
	_, err = ft.ReadChunk(r, len(ft.Chunks), limits)
	require.ErrorAs(t, err, &ce)
	_, err = ft.ReadGroup(r, len(ft.Groups))
	require.ErrorAs(t, err, &ce)
	// A directory smaller than the chunk's value numbers: corrupt.
	small := limits
	small[UserField] = 1
	_, err = ft.ReadChunk(r, 0, small)
	require.ErrorAs(t, err, &ce)
}
