package archive

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
)

// File is what a Writer writes to: an *os.File, or anything else that can
// be synced.
type File interface {
	io.Writer
	Sync() error
}

// idSeq is an activity ID as the index stores it.
type idSeq struct {
	ns  int64
	seq uint64
}

// Writer writes one archive file from the activities of a window, given
// newest first. The number of activities is known up front, so each gets
// its final ordinal (ascending ID order) as it arrives.
type Writer struct {
	blockBytes int // record bytes at which a block is closed
	f          File
	hdr        [HeaderSize]byte // written before the first block
	bw         *bufio.Writer
	off        int64
	name       string
	window     int64
	width      int64
	n, j       int

	local [NumFields]map[string]uint32
	vals  [NumFields][]string
	ords  [NumFields][][]uint32 // per value number, ordinals descending
	ids   []idSeq               // newest first

	bb     BlockBuilder
	raw    []byte
	comp   []byte
	frames [][]byte
	cuts   []int
	blocks []Section
	first  int

	// Copies of the records of users with at most copyLimit activities:
	// cp[v] lists those of user value v, in arrival order, as offsets into
	// the kept bytes: the first spilled of them in spill, the rest in cpBuf.
	// cpDead[v] is set once v has more, or once no more bytes can be kept.
	copyLimit int
	cpBuf     []byte
	cp        [][]cpRef
	cpDead    []bool
	copies    []Section
	copyMem   int // kept bytes held in memory, at most
	spillOpen func() (Spill, error)
	spill     Spill
	spilled   uint64
	cpScratch []byte

	started bool // the header is written
	format  int  // the version written: Format, or 2 for readers of that one
	groups  []Section
	chunks  []Section
	dirs    [NumFields]Section
	head    Section
}

// cpRef locates one kept record: the API call at off in the kept bytes,
// then the details, then its labels but the user's, lab[f] bytes each; with
// its ordinal and ID.
type cpRef struct {
	off      uint64
	api, det uint32
	lab      [NumFields]uint16
	o        uint32
	ns       int64
	seq      uint64
}

// size is the bytes the record takes in the kept bytes.
func (r *cpRef) size() int {
	n := int(r.api) + int(r.det)
	for _, l := range r.lab {
		n += int(l)
	}
	return n
}

// UserField is the position of the user field in FieldNames: the field
// whose values with few activities get copy blocks.
const UserField = 1

// MaxCopyBytes is the most record bytes a Writer keeps in memory for copy
// blocks. Once they are full, a writer with SpillCopies moves them to its
// spill file; one without gives no copies to users whose records arrive
// after that.
const MaxCopyBytes = 64 << 20

// MaxSpillBytes is the most record bytes a Writer keeps for copy blocks in
// all, memory and spill file together.
const MaxSpillBytes = 16 << 30

// Spill is the file where a Writer moves the copies it keeps once
// MaxCopyBytes of them are in memory: a temporary file its owner removes
// after Finish.
type Spill interface {
	io.Writer
	io.ReaderAt
}

// copyBlockBytes is the record bytes at which a copy block is closed: small,
// so that reading one user's records decompresses little.
const copyBlockBytes = 16 << 10

// KeepCopies makes the file keep, for each user with at most limit
// activities in it (limit at most 255), copies of their records together in
// copy blocks, so that reading one such user's records reads one small
// block instead of one large block per record. Call it before the first Add.
func (w *Writer) KeepCopies(limit int) {
	w.copyLimit = min(max(limit, 0), 255)
}

// SpillCopies makes the writer keep at most mem bytes of copies in memory
// (MaxCopyBytes if mem is not in (0, MaxCopyBytes)) and, when open is not
// nil, lets it keep more: when they fill the memory it calls open, once, and
// moves them to the file it returns, up to MaxSpillBytes in all. Without
// open, users whose records arrive once the memory is full get no copies.
// Call it before the first Add.
func (w *Writer) SpillCopies(mem int, open func() (Spill, error)) {
	if mem <= 0 || mem > MaxCopyBytes {
		mem = MaxCopyBytes
	}
	w.copyMem, w.spillOpen = mem, open
}

// WriteFormat2 makes the writer write format 2 (one index section) instead
// of Format, for readers that know no later one. Call it before the first
// Add.
func (w *Writer) WriteFormat2() {
	w.format = 2
	binary.BigEndian.PutUint16(w.hdr[8:], 2)
}

// NewWriter starts the archive of window (of width nanoseconds) holding n
// activities, named name in errors, and writes its header to f. A block is
// closed once it holds blockBytes of records (BlockBuilder.Size).
func NewWriter(f File, name string, window, width int64, n, blockBytes int) (*Writer, error) {
	w := &Writer{f: f, bw: bufio.NewWriterSize(f, 1<<20), name: name, window: window, width: width, n: n, blockBytes: blockBytes, format: Format, copyMem: MaxCopyBytes}
	for f := range w.local {
		w.local[f] = map[string]uint32{}
	}
	w.ids = make([]idSeq, 0, n)
	copy(w.hdr[:], magic)
	binary.BigEndian.PutUint16(w.hdr[8:], Format)
	w.off = HeaderSize
	return w, nil
}

// Add appends the next activity: its ID as unix nanoseconds and sequence
// number, which must order below the previous activity's, its labels in
// FieldNames order, its API call and its details. It keeps none of them;
// the caller checks that the ID lies in the window.
func (w *Writer) Add(ns int64, seq uint64, labels [NumFields]string, apicall string, details []byte) error {
	if w.j >= w.n {
		return fmt.Errorf("archive %s: more than the %d activities expected", w.name, w.n)
	}
	if p := len(w.ids) - 1; ns < 0 || (p >= 0 && (ns > w.ids[p].ns || ns == w.ids[p].ns && seq >= w.ids[p].seq)) {
		return fmt.Errorf("archive %s: activity (%d, %d) out of order", w.name, ns, seq)
	}
	o := uint32(w.n - 1 - w.j)
	w.j++
	w.ids = append(w.ids, idSeq{ns, seq})
	for f, l := range labels {
		v, ok := w.local[f][l]
		if !ok {
			l = strings.Clone(l) // l may alias an iterator's buffer
			v = uint32(len(w.vals[f]))
			w.local[f][l] = v
			w.vals[f] = append(w.vals[f], l)
			w.ords[f] = append(w.ords[f], nil)
			if f == UserField {
				w.cp = append(w.cp, nil)
				w.cpDead = append(w.cpDead, false)
			}
		}
		w.ords[f][v] = append(w.ords[f][v], o)
		if f == UserField && w.copyLimit > 0 {
			if err := w.keep(v, o, ns, seq, &labels, apicall, details); err != nil {
				return err
			}
		}
	}
	w.bb.Add(apicall, details)
	if w.bb.bytes >= w.blockBytes {
		return w.flushBlock()
	}
	return nil
}

// keep adds a copy of one record of user value v, or gives v up.
func (w *Writer) keep(v, o uint32, ns int64, seq uint64, labels *[NumFields]string, apicall string, details []byte) error {
	if w.cpDead[v] {
		return nil
	}
	if len(w.ords[UserField][v]) > w.copyLimit {
		w.cp[v], w.cpDead[v] = nil, true
		return nil
	}
	r := cpRef{api: uint32(len(apicall)), det: uint32(len(details)), o: o, ns: ns, seq: seq}
	for f, l := range labels {
		if f != UserField {
			r.lab[f] = uint16(len(l))
		}
	}
	size := r.size()
	full := len(w.cpBuf)+size > w.copyMem
	if full && w.spillOpen != nil && size <= w.copyMem && w.spilled+uint64(len(w.cpBuf)+size) <= MaxSpillBytes {
		if err := w.spillKept(); err != nil {
			return err
		}
		full = false
	}
	if full {
		w.cp[v], w.cpDead[v] = nil, true
		return nil
	}
	r.off = w.spilled + uint64(len(w.cpBuf))
	w.cpBuf = append(w.cpBuf, apicall...)
	w.cpBuf = append(w.cpBuf, details...)
	for f, l := range labels {
		if f != UserField {
			w.cpBuf = append(w.cpBuf, l...)
		}
	}
	w.cp[v] = append(w.cp[v], r)
	return nil
}

// spillKept moves the kept bytes in memory to the spill file, opening it
// first if need be.
func (w *Writer) spillKept() error {
	if w.spill == nil {
		sp, err := w.spillOpen()
		if err != nil {
			return fmt.Errorf("archive %s: cannot open the spill file of its copies: %w", w.name, err)
		}
		w.spill = sp
	}
	if _, err := w.spill.Write(w.cpBuf); err != nil {
		return fmt.Errorf("archive %s: cannot write the spill file of its copies: %w", w.name, err)
	}
	w.spilled += uint64(len(w.cpBuf))
	w.cpBuf = w.cpBuf[:0]
	return nil
}

// kept returns the bytes holding the record r locates, and r with its
// offset into them.
func (w *Writer) kept(r cpRef) ([]byte, cpRef, error) {
	if r.off >= w.spilled {
		r.off -= w.spilled
		return w.cpBuf, r, nil
	}
	n := r.size()
	w.cpScratch = slices.Grow(w.cpScratch[:0], n)[:n]
	if _, err := w.spill.ReadAt(w.cpScratch, int64(r.off)); err != nil {
		return nil, r, fmt.Errorf("archive %s: cannot read the spill file of its copies: %w", w.name, err)
	}
	r.off = 0
	return w.cpScratch, r, nil
}

// writeCopies writes the copy blocks and returns, per user value, 1 + the
// position of its first copy, or 0 when it has none. Users come in the
// order of their values, so that users with close names share blocks.
func (w *Writer) writeCopies() ([]uint64, error) {
	at := make([]uint64, len(w.vals[UserField]))
	if w.copyLimit == 0 {
		return at, nil
	}
	var users []uint32
	for v := range w.cp {
		if !w.cpDead[v] && len(w.cp[v]) > 0 {
			users = append(users, uint32(v))
		}
	}
	slices.SortFunc(users, func(a, b uint32) int { return strings.Compare(w.vals[UserField][a], w.vals[UserField][b]) })
	var bb BlockBuilder
	var rows copyRows
	pos := 0
	flush := func() error {
		if bb.count == 0 {
			return nil
		}
		w.raw = bb.Encode(w.raw[:0])
		cuts := bb.cuts
		if w.format >= 3 {
			w.raw = rows.encode(w.raw, bb.distinct, &cuts)
			rows.reset()
		}
		s, err := w.writeSection(w.raw, cuts)
		if err != nil {
			return err
		}
		s.First, s.Count = pos-bb.count, bb.count
		w.copies = append(w.copies, s)
		bb.Reset()
		return nil
	}
	for _, v := range users {
		at[v] = uint64(pos) + 1
		for _, r := range w.cp[v] {
			buf, r, err := w.kept(r)
			if err != nil {
				return nil, err
			}
			api := buf[r.off : r.off+uint64(r.api)]
			bb.Add(string(api), buf[r.off+uint64(r.api):r.off+uint64(r.api)+uint64(r.det)])
			rows.add(buf, r)
			pos++
		}
		if bb.bytes >= copyBlockBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	return at, flush()
}

// Values returns the distinct values of field f added so far, by value
// number. The slice is the writer's own: changing it changes what Finish
// writes, which tests use to write damaged files.
func (w *Writer) Values(f int) []string { return w.vals[f] }

// Size returns the bytes written so far: the file size once Finish returns.
func (w *Writer) Size() int64 { return w.off }

// writeSection compresses raw, writes it and returns where it went.
func (w *Writer) writeSection(raw []byte, cuts []int) (Section, error) {
	if !w.started { // the header, before the first section
		w.started = true
		if _, err := w.bw.Write(w.hdr[:]); err != nil {
			return Section{}, err
		}
	}
	w.comp = CompressParts(w.comp[:0], raw, cuts, &w.frames)
	s := Section{Off: w.off, CLen: uint64(len(w.comp)), RLen: uint64(len(raw)), CRC: crc32.Checksum(w.comp, crcTable)}
	if _, err := w.bw.Write(w.comp); err != nil {
		return s, err
	}
	w.off += int64(len(w.comp))
	return s, nil
}

func (w *Writer) flushBlock() error {
	if w.bb.count == 0 {
		return nil
	}
	w.raw = w.bb.Encode(w.raw[:0])
	s, err := w.writeSection(w.raw, w.bb.cuts)
	if err != nil {
		return err
	}
	s.First, s.Count = w.first, w.bb.count
	w.first += w.bb.count
	w.blocks = append(w.blocks, s)
	w.bb.Reset()
	return nil
}

// Finish writes the last block, the index section and the footer, and
// syncs the file.
func (w *Writer) Finish() error {
	if w.j != w.n {
		return fmt.Errorf("archive %s: got %d of %d activities", w.name, w.j, w.n)
	}
	if err := w.flushBlock(); err != nil {
		return err
	}
	copyAt, err := w.writeCopies()
	if err != nil {
		return err
	}
	appendSection := func(b []byte, s Section) []byte {
		b = binary.AppendUvarint(b, s.CLen)
		b = binary.AppendUvarint(b, s.RLen)
		return binary.BigEndian.AppendUint32(b, s.CRC)
	}
	ft := []byte{byte(w.format)}
	ft = binary.AppendUvarint(ft, uint64(w.window))
	ft = binary.AppendUvarint(ft, uint64(w.width))
	ft = binary.AppendUvarint(ft, uint64(w.n))
	if w.format >= 3 {
		if err := w.writeParts(copyAt); err != nil {
			return err
		}
		ft = binary.AppendUvarint(ft, ChunkOrdinals)
		ft = appendSection(ft, w.head)
		for _, d := range w.dirs {
			ft = appendSection(ft, d)
		}
	} else {
		w.cuts = w.cuts[:0]
		w.raw = appendIndex(w.raw[:0], w.ids, &w.vals, &w.ords, &w.cuts)
		// Format 2: per user value, where its copies start (1 + position), or 0.
		w.cuts = append(w.cuts, len(w.raw))
		for _, p := range copyAt {
			w.raw = binary.AppendUvarint(w.raw, p)
		}
		ix, err := w.writeSection(w.raw, w.cuts)
		if err != nil {
			return err
		}
		ft = appendSection(ft, ix)
	}
	for _, bs := range [][]Section{w.blocks, w.copies} {
		ft = binary.AppendUvarint(ft, uint64(len(bs)))
		for _, b := range bs {
			ft = binary.AppendUvarint(ft, uint64(b.Count))
			ft = appendSection(ft, b)
		}
	}
	if w.format >= 3 {
		for _, ss := range [][]Section{w.groups, w.chunks} {
			ft = binary.AppendUvarint(ft, uint64(len(ss)))
			for _, s := range ss {
				ft = appendSection(ft, s)
			}
		}
	}
	ft = binary.BigEndian.AppendUint32(ft, crc32.Checksum(ft, crcTable))
	body := len(ft) - 4
	// Trailer: CRC (already appended), footer length, magic.
	ft = binary.BigEndian.AppendUint32(ft, uint32(body))
	ft = append(ft, magic...)
	if _, err := w.bw.Write(ft); err != nil {
		return err
	}
	w.off += int64(len(ft))
	if err := w.bw.Flush(); err != nil {
		return err
	}
	return w.f.Sync()
}
