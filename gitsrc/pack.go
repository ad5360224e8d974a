package gitsrc

import (
	"bufio"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// A pack from the server is indexed by go-git while it arrives, and
// indexing inflates every object: a blob of 2 GB of zeros, 2 MB on the
// wire, took a run past 6 GB of memory before anything was written. The
// pack is therefore read here first, object by object: each object's
// header says how large it inflates (a delta's data says how large its
// result is), and an object over the limit stops the fetch before go-git
// has seen a byte of its data. An object whose data inflates past what its
// header says stops it too, so the header cannot lie its way through.

// streamThreshold: blobs over this size are read from the pack as they
// are copied, not loaded whole into memory first.
const streamThreshold = 1 << 20

// newStore makes an empty bare repository in dir whose fetches refuse any
// object over maxObject bytes (0: no limit).
func newStore(dir string, maxObject int64) (*git.Repository, error) {
	fs := osfs.New(filepath.Clean(dir))
	s := filesystem.NewStorageWithOptions(fs, cache.NewObjectLRUDefault(), filesystem.Options{LargeObjectThreshold: streamThreshold})
	return git.Init(&checkedStorage{Storage: s, maxObject: maxObject}, nil)
}

// openLocal opens the repository at path in place, reading objects over
// streamThreshold as they are copied: go-git's default storage loads each
// loose object whole (two files of 90 MiB took a checkout to 448 MiB).
func openLocal(path string) (*git.Repository, error) {
	repo, err := git.PlainOpenWithOptions(path, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if err != nil {
		return nil, err
	}
	fs, ok := repo.Storer.(*filesystem.Storage)
	if !ok {
		return repo, nil
	}
	s := filesystem.NewStorageWithOptions(fs.Filesystem(), cache.NewObjectLRUDefault(), filesystem.Options{LargeObjectThreshold: streamThreshold})
	return git.Open(s, nil)
}

// checkedStorage is go-git's on-disk storage whose incoming packs are
// checked by scanPack before go-git reads them.
type checkedStorage struct {
	*filesystem.Storage
	maxObject int64
	// maxCount, when not 0, bounds how many objects the next pack may
	// hold: a batch of blobs asked for by id (see partial.go). Fetches
	// are serialised by the Checkout, so the field needs no lock.
	maxCount uint32
}

// PackfileWriter is what go-git's fetch writes a received pack to.
func (s *checkedStorage) PackfileWriter() (io.WriteCloser, error) {
	w, err := s.Storage.PackfileWriter()
	maxCount := s.maxCount
	s.maxCount = 0
	if err != nil || s.maxObject <= 0 && maxCount == 0 {
		return w, err
	}
	pr, pw := io.Pipe()
	c := &packChecker{pw: pw, dst: w, done: make(chan error, 1)}
	go func() {
		err := scanPackCount(pr, w, s.maxObject, maxCount)
		// Writes after a refusal fail with it, which ends the fetch.
		pr.CloseWithError(err)
		c.done <- err
	}()
	return c, nil
}

// packChecker passes what scanPack has checked on to go-git's writer.
type packChecker struct {
	pw   *io.PipeWriter
	dst  io.WriteCloser
	done chan error
}

func (c *packChecker) Write(p []byte) (int, error) { return c.pw.Write(p) }

func (c *packChecker) Close() error {
	c.pw.Close()
	err := <-c.done
	if cerr := c.dst.Close(); err == nil {
		err = cerr
	}
	return err
}

// forwarder reads the pack byte-exactly (flate takes it as its
// io.ByteReader, so it never reads ahead of the object it inflates) and
// passes on to dst only what has been read, so dst never sees the data of
// an object whose header has not been checked.
type forwarder struct {
	r       *bufio.Reader
	dst     io.Writer
	pending []byte
}

func (f *forwarder) ReadByte() (byte, error) {
	b, err := f.r.ReadByte()
	if err != nil {
		return 0, err
	}
	f.pending = append(f.pending, b)
	if len(f.pending) >= 64<<10 {
		return b, f.flush()
	}
	return b, nil
}

func (f *forwarder) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	f.pending = append(f.pending, p[:n]...)
	if len(f.pending) >= 64<<10 {
		if ferr := f.flush(); ferr != nil {
			return n, ferr
		}
	}
	return n, err
}

func (f *forwarder) flush() error {
	if len(f.pending) == 0 {
		return nil
	}
	_, err := f.dst.Write(f.pending)
	f.pending = f.pending[:0]
	return err
}

// Object types in a pack (gitformat-pack).
const (
	packCommit   = 1
	packTree     = 2
	packBlob     = 3
	packTag      = 4
	packOfsDelta = 6
	packRefDelta = 7
)

// TooLargeError: an object of the commit is larger than the limit.
type TooLargeError struct {
	// Path is where the object is in the commit; empty while it is only
	// known from the pack.
	Path string
	// Size is the object's size as far as it was read: at least this.
	Size, Limit int64
	// What names the limit, as a flag.
	What string
}

func (e *TooLargeError) Error() string {
	where := "an object the server sent"
	if e.Path != "" {
		where = e.Path
	}
	return fmt.Sprintf("%s: %d bytes, over the limit of %d (%s); refused before it was inflated or written", where, e.Size, e.Limit, e.What)
}

// Is makes a TooLargeError an ErrTooLarge.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// scanPack reads a pack from r, refusing any object that inflates past
// max, and passes what it has read to dst as it goes.
func scanPack(r io.Reader, dst io.Writer, max int64) error {
	return scanPackCount(r, dst, max, 0)
}

// TooManyObjectsError: a pack answering a request for some blobs by id
// holds more objects than were asked for, past a margin.
type TooManyObjectsError struct{ Count, Limit uint32 }

func (e *TooManyObjectsError) Error() string {
	return fmt.Sprintf("the server answered a request for blobs with a pack of %d objects, more than the %d it may hold; refused before it was read", e.Count, e.Limit)
}

// scanPackCount is scanPack that also refuses, from its header, a pack of
// more than maxCount objects (0: any number); max <= 0 is no size limit.
func scanPackCount(r io.Reader, dst io.Writer, max int64, maxCount uint32) error {
	if max <= 0 {
		max = 1<<63 - 1
	}
	f := &forwarder{r: bufio.NewReaderSize(r, 64<<10), dst: dst}
	var hdr [12]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return f.flush() // nothing sent: go-git says so itself
		}
		return err
	}
	if string(hdr[:4]) != "PACK" {
		// Not a pack go-git can read either; let it say what is wrong.
		return passRest(f)
	}
	count := binary.BigEndian.Uint32(hdr[8:])
	if maxCount > 0 && count > maxCount {
		return &TooManyObjectsError{Count: count, Limit: maxCount}
	}
	for range count {
		typ, size, err := objectHeader(f)
		if err != nil {
			return fmt.Errorf("reading the pack: %w", err)
		}
		switch typ {
		case packOfsDelta:
			if _, err := varint(f); err != nil {
				return fmt.Errorf("reading the pack: %w", err)
			}
		case packRefDelta:
			var base [20]byte
			if _, err := io.ReadFull(f, base[:]); err != nil {
				return fmt.Errorf("reading the pack: %w", err)
			}
		case packCommit, packTree, packBlob, packTag:
			if size > max {
				return &TooLargeError{Size: size, Limit: max, What: "--max-object-bytes"}
			}
		default:
			return fmt.Errorf("reading the pack: object of unknown type %d", typ)
		}
		if err := f.flush(); err != nil {
			return err
		}
		if err := inflateChecked(f, typ, size, max); err != nil {
			return err
		}
	}
	return passRest(f)
}

// inflateChecked reads one object's zlib stream to its end, refusing it
// when it inflates past its header's size or, for a delta, when the object
// it makes is over max.
func inflateChecked(f *forwarder, typ int, size, max int64) error {
	zr, err := zlib.NewReader(f)
	if err != nil {
		return fmt.Errorf("reading the pack: %w", err)
	}
	// One byte past the header's size is read, if it is there: to see it.
	inflated := &counter{r: zr}
	data := bufio.NewReader(io.LimitReader(inflated, size+1))
	if typ == packOfsDelta || typ == packRefDelta {
		// A delta's data starts with the sizes of its base and its result.
		if _, err := binary.ReadUvarint(data); err != nil {
			return fmt.Errorf("reading the pack: delta: %w", err)
		}
		result, err := binary.ReadUvarint(data)
		if err != nil {
			return fmt.Errorf("reading the pack: delta: %w", err)
		}
		if result > uint64(max) {
			return &TooLargeError{Size: int64(min(result, 1<<62)), Limit: max, What: "--max-object-bytes"}
		}
	}
	if _, err := io.Copy(io.Discard, data); err != nil {
		return fmt.Errorf("reading the pack: %w", err)
	}
	// The stream must end where the header says: past it is an object
	// that lied about its size.
	if inflated.n > size {
		return fmt.Errorf("reading the pack: an object inflates past the %d bytes its header says; refused", size)
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return fmt.Errorf("reading the pack: %w", err)
	}
	return zr.Close()
}

// counter counts what is read through it.
type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// objectHeader reads a pack object's type and inflated size.
func objectHeader(f *forwarder) (typ int, size int64, err error) {
	b, err := f.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	typ = int(b>>4) & 7
	size = int64(b & 15)
	shift := 4
	for b&0x80 != 0 {
		if b, err = f.ReadByte(); err != nil {
			return 0, 0, err
		}
		if shift > 56 {
			return 0, 0, errors.New("object size overflows")
		}
		size |= int64(b&0x7f) << shift
		shift += 7
	}
	return typ, size, nil
}

// varint reads an ofs-delta's base offset, whose encoding only needs
// skipping here.
func varint(f *forwarder) (int64, error) {
	var n int64
	for i := 0; ; i++ {
		b, err := f.ReadByte()
		if err != nil {
			return 0, err
		}
		if i > 9 {
			return 0, errors.New("delta offset overflows")
		}
		n = n<<7 | int64(b&0x7f)
		if b&0x80 == 0 {
			return n, nil
		}
	}
}

// passRest passes the rest of the stream (the pack's checksum) on as it is.
func passRest(f *forwarder) error {
	if err := f.flush(); err != nil {
		return err
	}
	_, err := f.r.WriteTo(f.dst)
	return err
}
