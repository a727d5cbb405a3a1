package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tamperBlobs wraps a real node's session and changes what getBlob returns.
type tamperBlobs struct {
	Session
	edit func(offset uint64, data []byte, size uint64) ([]byte, uint64)
}

func (t *tamperBlobs) CreateBlob(ctx context.Context, size uint64) ([]byte, int, error) {
	return t.Session.(BlobSession).CreateBlob(ctx, size)
}
func (t *tamperBlobs) PutBlob(ctx context.Context, id []byte, offset uint64, data []byte) (uint64, error) {
	return t.Session.(BlobSession).PutBlob(ctx, id, offset, data)
}
func (t *tamperBlobs) GetBlob(ctx context.Context, id []byte, offset uint64, n int) ([]byte, uint64, error) {
	data, size, err := t.Session.(BlobSession).GetBlob(ctx, id, offset, n)
	if err == nil && t.edit != nil {
		data, size = t.edit(offset, data, size)
	}
	return data, size, err
}

func writeRandomFile(t *testing.T, name string, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// TestFilesThroughRealNode: a file goes encrypted through the node's blob
// store to every member, who saves exactly its bytes; sizes at segment and
// chunk edges, an empty file, and a hostile name.
func TestFilesThroughRealNode(t *testing.T) {
	addr, fp := startRealNode(t)
	ctx := context.Background()
	alice, bob := newRealUser(t, addr, fp, "alice"), newRealUser(t, addr, fp, "bob")
	if _, err := alice.c.CreateGroup(ctx, "g", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, n := range []int{0, 1, fileSegment - 1, fileSegment, fileSegment + 1, 3 << 20} {
		path, data := writeRandomFile(t, "f.bin", n)
		ref, err := alice.c.SendFile(ctx, "g", path, nil)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		evs, err := bob.c.Recv(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var got *Event
		for _, e := range evs {
			if e.Kind == EventFile {
				got = e
			}
		}
		if got == nil || got.Sender != "alice" || got.Text != "f.bin" {
			t.Fatalf("%d bytes: bob's events %+v", n, evs)
		}
		r, err := ParseFileRef(got.File)
		if err != nil || r.Size != uint64(n) || !bytes.Equal(r.ID, ref.ID) {
			t.Fatalf("%d bytes: reference %+v, %v", n, r, err)
		}
		saved, err := bob.c.DownloadFile(ctx, r, dir, nil)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		back, err := os.ReadFile(saved)
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("%d bytes: saved %d bytes to %s, %v", n, len(back), saved, err)
		}
	}
	// The history keeps the reference across a restart of the state.
	evs, err := bob.st.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, e := range evs {
		if e.Kind == EventFile && e.File != nil {
			files++
		}
	}
	if files != 6 {
		t.Errorf("bob's history holds %d files, want 6", files)
	}
	// A second download of the same name gets a new name.
	names, _ := os.ReadDir(dir)
	if len(names) != 6 {
		t.Errorf("download dir holds %d files, want 6 (f.bin, f (1).bin, …)", len(names))
	}
	// A hostile name cannot leave the directory or reach the terminal.
	path, _ := writeRandomFile(t, "x", 10)
	hostile := filepath.Join(filepath.Dir(path), "..\x1b[31mevil\nname.txt")
	if err := os.Rename(path, hostile); err != nil {
		t.Fatal(err)
	}
	ref, err := alice.c.SendFile(ctx, "g", hostile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(ref.Name, "/\x1b\n") || strings.HasPrefix(ref.Name, ".") {
		t.Errorf("sent name %q", ref.Name)
	}
}

// TestFileTamperedRefused: whatever the node changes in a blob, the
// receiver refuses it and leaves nothing in the download directory.
func TestFileTamperedRefused(t *testing.T) {
	addr, fp := startRealNode(t)
	ctx := context.Background()
	alice, bob := newRealUser(t, addr, fp, "alice"), newRealUser(t, addr, fp, "bob")
	alice.c.CreateGroup(ctx, "g", 0)
	if _, err := alice.c.Invite(ctx, "g", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	path, _ := writeRandomFile(t, "doc.pdf", 300<<10)
	ref, err := alice.c.SendFile(ctx, "g", path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.Recv(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	honest := bob.c.cfg.Session
	for name, edit := range map[string]func(uint64, []byte, uint64) ([]byte, uint64){
		"bit flip": func(off uint64, d []byte, s uint64) ([]byte, uint64) {
			if off == 0 {
				d[100] ^= 1
			}
			return d, s
		},
		"last byte": func(off uint64, d []byte, s uint64) ([]byte, uint64) {
			if off+uint64(len(d)) == s {
				d[len(d)-1] ^= 0x80
			}
			return d, s
		},
		"truncated":  func(off uint64, d []byte, s uint64) ([]byte, uint64) { return d, s - 16 },
		"other size": func(off uint64, d []byte, s uint64) ([]byte, uint64) { return d, s + 1 },
	} {
		bob.c.cfg.Session = &tamperBlobs{Session: honest, edit: edit}
		dir := t.TempDir()
		_, err := bob.c.DownloadFile(ctx, ref, dir, nil)
		if !errors.Is(err, ErrFileTampered) && !(name == "truncated" && err != nil) {
			t.Errorf("%s: %v, want ErrFileTampered", name, err)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("%s: %d files left in the download directory", name, len(left))
		}
	}
	// A reference with another key or hash (a forged message) fails too.
	bob.c.cfg.Session = honest
	bad := *ref
	bad.Hash = bytes.Repeat([]byte{1}, 32)
	if _, err := bob.c.DownloadFile(ctx, &bad, t.TempDir(), nil); !errors.Is(err, ErrFileTampered) {
		t.Errorf("wrong hash: %v", err)
	}
	if _, err := bob.c.DownloadFile(ctx, ref, t.TempDir(), nil); err != nil {
		t.Errorf("the honest download: %v", err)
	}
}

func TestSafeFileName(t *testing.T) {
	for in, want := range map[string]string{
		"report.pdf":             "report.pdf",
		"../../etc/passwd":       "passwd",
		`..\..\boot.ini`:         "boot.ini",
		".bashrc":                "bashrc",
		"..":                     "file",
		"":                       "file",
		"a\x1b[2Jb":              "a_[2Jb",
		"line\nbreak":            "line_break",
		"rtl\u202egnp.exe":       "rtl_gnp.exe",
		"bad\xffutf8":            "bad_utf8",
		strings.Repeat("é", 200): strings.Repeat("é", 127),
	} {
		if got := SafeFileName(in); got != want {
			t.Errorf("SafeFileName(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseFileRef(f *testing.F) {
	f.Add((&FileRef{ID: make([]byte, 32), Key: make([]byte, 32), Hash: make([]byte, 32), Name: "a", Size: 5, Segment: 65536}).marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseFileRef(b)
		if err != nil {
			return
		}
		if !bytes.Equal(r.marshal(), b) {
			t.Fatalf("%x re-marshals differently", b)
		}
		if r.BlobSize() < r.Size {
			t.Fatalf("blob size overflow for %+v", r)
		}
	})
}

func FuzzSafeFileName(f *testing.F) {
	f.Add("../x\x1b\n")
	f.Fuzz(func(t *testing.T, s string) {
		n := SafeFileName(s)
		if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\\\x00\n\r\x1b") || strings.HasPrefix(n, ".") || len(n) > maxFileName {
			t.Fatalf("SafeFileName(%q) = %q", s, n)
		}
	})
}
