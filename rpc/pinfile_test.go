package rpc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFilePinStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := NewFilePinStore(dir)
	if fp, ok, err := s.Pin("a:1"); err != nil || ok {
		t.Fatalf("Pin on a missing file = %q, %v, %v; want not found", fp, ok, err)
	}
	fp1 := "sha256:" + strings.Repeat("ab", 32)
	fp2 := "sha256:" + strings.Repeat("cd", 32)
	if err := s.SetPin("A:1", strings.ToUpper(fp1)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPin("b:2", fp2); err != nil {
		t.Fatal(err)
	}
	for server, want := range map[string]string{"a:1": fp1, "b:2": fp2} {
		if got, ok, err := NewFilePinStore(dir).Pin(server); err != nil || !ok || got != want {
			t.Errorf("Pin(%s) = %q, %v, %v; want %q", server, got, ok, err, want)
		}
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, s.Path: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("mode of %s = %v, want %v", path, st.Mode().Perm(), want)
		}
	}
	if err := s.SetPin("c:3", "md5:00"); err == nil {
		t.Error("SetPin accepted a malformed fingerprint")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("state directory holds %d entries, want only the pin file", len(entries))
	}
}

func TestFilePinStoreBadFiles(t *testing.T) {
	for name, content := range map[string]string{
		"not json":        "{",
		"bad fingerprint": `{"servers":{"a:1":"sha256:00"}}`,
		"too large":       strings.Repeat(" ", maxPinFile+1),
	} {
		t.Run(name, func(t *testing.T) {
			s := NewFilePinStore(t.TempDir())
			if err := os.WriteFile(s.Path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Pin("a:1"); err == nil {
				t.Error("Pin read a damaged file without an error")
			}
			if err := s.SetPin("b:2", "sha256:"+strings.Repeat("00", 32)); err == nil && name != "bad fingerprint" {
				t.Error("SetPin overwrote a damaged file")
			}
		})
	}
}
