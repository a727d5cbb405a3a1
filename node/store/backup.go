package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Backup files.
//
// A backup is one file:
//
//	magic      "qpchat-backup-1\n" (16 bytes)
//	headerLen  uint32, big-endian, at most MaxBackupHeader
//	header     JSON BackupHeader
//	database   header.DBBytes bytes: a consistent snapshot of the bbolt
//	           file (bbolt Tx.WriteTo), its values still sealed under the
//	           store key, identifiers still HMACs
//	files      for each header.Files entry, its Bytes of sealed content
//	           (the node's identity), sealed to the store key with the
//	           file's name as associated data
//	checksum   SHA-256 of everything before it (32 bytes)
//
// The checksum finds damage (a truncated copy, a flipped bit); the
// store key, which is never in the backup, keeps the content private,
// and the AEAD of every value finds tampering once the file is opened.

const backupMagic = "qpchat-backup-1\n"

// Bounds of what ReadBackup accepts.
const (
	MaxBackupHeader   = 64 << 10
	MaxBackupFile     = 1 << 20
	MaxBackupFiles    = 16
	maxBackupFileName = 64
)

// BackupHeader describes a backup.
type BackupHeader struct {
	Created       time.Time `json:"created"`
	Version       string    `json:"version"`        // qpchat version that made it
	SchemaVersion uint64    `json:"schema_version"` // of the database
	DBBytes       int64     `json:"db_bytes"`
	// ClusterEntry, in a backup of a cluster node, is the cluster log
	// entry the snapshot is at: it holds every write of the entries up
	// to it, and none after (backup_cluster.go).
	ClusterEntry uint64       `json:"cluster_entry,omitempty"`
	Files        []BackupFile `json:"files"`
}

// BackupFile is a sealed file carried by a backup.
type BackupFile struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
}

// backupFilePath is the bucket path that a backup's files are sealed to;
// no bucket of the database has this name.
var backupFilePath = appendPath(nil, []byte("qpchat-backup-file"))

// WriteBackup writes a backup of the open database to w: a consistent
// snapshot taken in one read transaction while writers go on, and files
// (name → plaintext), sealed under the store key. It returns the header
// written.
func (db *DB) WriteBackup(w io.Writer, version string, files map[string][]byte, now time.Time) (BackupHeader, error) {
	h := BackupHeader{Created: now.UTC(), Version: version}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sortStrings(names)
	sealed := make([][]byte, len(names))
	for i, name := range names {
		if err := checkBackupFileName(name); err != nil {
			return h, err
		}
		s, err := db.seal.seal(backupFilePath, []byte(name), files[name])
		if err != nil {
			return h, err
		}
		sealed[i] = s
		h.Files = append(h.Files, BackupFile{Name: name, Bytes: int64(len(s))})
	}
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, sum), 1<<20)
	err := db.snapshot(func(size int64, schema, entry uint64, writeTo func(io.Writer) (int64, error)) error {
		h.DBBytes, h.SchemaVersion, h.ClusterEntry = size, schema, entry
		hj, err := json.Marshal(h)
		if err != nil {
			return err
		}
		bw.WriteString(backupMagic)
		bw.Write(binary.BigEndian.AppendUint32(nil, uint32(len(hj))))
		bw.Write(hj)
		n, err := writeTo(bw)
		if err != nil {
			return fmt.Errorf("store: writing the snapshot: %w", err)
		}
		if n != size {
			return fmt.Errorf("store: snapshot of %d bytes, announced %d", n, size)
		}
		return nil
	})
	if err != nil {
		return h, err
	}
	for _, s := range sealed {
		bw.Write(s)
	}
	if err := bw.Flush(); err != nil {
		return h, fmt.Errorf("store: writing the backup: %w", err)
	}
	if _, err := w.Write(sum.Sum(nil)); err != nil {
		return h, fmt.Errorf("store: writing the backup: %w", err)
	}
	return h, nil
}

// OpenBackupFile opens a file sealed into a backup by WriteBackup, with
// the key of the database restored from that backup.
func (db *DB) OpenBackupFile(name string, sealed []byte) ([]byte, error) {
	return db.seal.open(backupFilePath, []byte(name), sealed)
}

func checkBackupFileName(name string) error {
	if name == "" || len(name) > maxBackupFileName || strings.ContainsAny(name, `/\`) || name == "." || name == ".." || filepath.Base(name) != name {
		return fmt.Errorf("store: invalid backup file name %q", name)
	}
	return nil
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// ErrBadBackup is returned by ReadBackup for a file that is not a
// complete, intact backup.
var ErrBadBackup = errors.New("store: not an intact qpchat backup")

// parseBackupHeader reads the magic, length and header from r, within
// the bounds above.
func parseBackupHeader(r io.Reader) (BackupHeader, error) {
	var h BackupHeader
	var pre [len(backupMagic) + 4]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return h, fmt.Errorf("%w: reading its start: %v", ErrBadBackup, err)
	}
	if string(pre[:len(backupMagic)]) != backupMagic {
		return h, fmt.Errorf("%w: wrong magic", ErrBadBackup)
	}
	n := binary.BigEndian.Uint32(pre[len(backupMagic):])
	if n == 0 || n > MaxBackupHeader {
		return h, fmt.Errorf("%w: header of %d bytes", ErrBadBackup, n)
	}
	hj := make([]byte, n)
	if _, err := io.ReadFull(r, hj); err != nil {
		return h, fmt.Errorf("%w: reading its header: %v", ErrBadBackup, err)
	}
	dec := json.NewDecoder(bytes.NewReader(hj))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return h, fmt.Errorf("%w: header: %v", ErrBadBackup, err)
	}
	if dec.More() {
		return h, fmt.Errorf("%w: trailing data after the header", ErrBadBackup)
	}
	if h.DBBytes <= 0 || len(h.Files) > MaxBackupFiles {
		return h, fmt.Errorf("%w: header announces %d database bytes and %d files", ErrBadBackup, h.DBBytes, len(h.Files))
	}
	seen := map[string]bool{}
	for _, f := range h.Files {
		if err := checkBackupFileName(f.Name); err != nil || seen[f.Name] {
			return h, fmt.Errorf("%w: file name %q", ErrBadBackup, f.Name)
		}
		seen[f.Name] = true
		if f.Bytes <= 0 || f.Bytes > MaxBackupFile {
			return h, fmt.Errorf("%w: file %s of %d bytes", ErrBadBackup, f.Name, f.Bytes)
		}
	}
	return h, nil
}

// ReadBackup reads a backup from r, writing the database snapshot to
// dbOut, and returns its header and sealed files once the checksum
// matches. On any error, what was written to dbOut must be discarded.
func ReadBackup(r io.Reader, dbOut io.Writer) (BackupHeader, map[string][]byte, error) {
	sum := sha256.New()
	tr := io.TeeReader(bufio.NewReaderSize(r, 1<<20), sum)
	h, err := parseBackupHeader(tr)
	if err != nil {
		return h, nil, err
	}
	if n, err := io.CopyN(dbOut, tr, h.DBBytes); err != nil {
		return h, nil, fmt.Errorf("%w: database cut short after %d of %d bytes: %v", ErrBadBackup, n, h.DBBytes, err)
	}
	files := map[string][]byte{}
	for _, f := range h.Files {
		b := make([]byte, f.Bytes)
		if _, err := io.ReadFull(tr, b); err != nil {
			return h, nil, fmt.Errorf("%w: file %s cut short: %v", ErrBadBackup, f.Name, err)
		}
		files[f.Name] = b
	}
	if err := checkTrailer(tr, sum); err != nil {
		return h, nil, err
	}
	return h, files, nil
}

// checkTrailer reads the checksum from r (which feeds sum) and checks it
// and that nothing follows.
func checkTrailer(r io.Reader, sum hash.Hash) error {
	want := sum.Sum(nil)
	var got [sha256.Size]byte
	if _, err := io.ReadFull(r, got[:]); err != nil {
		return fmt.Errorf("%w: checksum missing: %v", ErrBadBackup, err)
	}
	if !bytes.Equal(got[:], want) {
		return fmt.Errorf("%w: checksum mismatch (damaged or truncated copy)", ErrBadBackup)
	}
	if n, _ := io.Copy(io.Discard, io.LimitReader(r, 1)); n != 0 {
		return fmt.Errorf("%w: data after the checksum", ErrBadBackup)
	}
	return nil
}

// WriteFileAtomic writes data to path through a temporary file in the
// same directory, fsyncs it and renames it into place, then fsyncs the
// directory: after a crash path holds either the old or the new content.
func WriteFileAtomic(path string, perm os.FileMode, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making renames in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
