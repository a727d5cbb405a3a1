package rpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// maxPinFile bounds what FilePinStore reads from disk.
const maxPinFile = 1 << 20

// FilePinStore keeps pins in a small JSON file (mode 0600, directory
// 0700): {"servers": {"host:port": "sha256:…"}}. It stands in until the
// client's encrypted state store exists. Fingerprints are public, so the
// file holds no secret; the mode keeps other users from re-pinning.
type FilePinStore struct {
	Path string

	mu sync.Mutex
}

type pinFile struct {
	Servers map[string]string `json:"servers"`
	// Next holds each pinned key's successor commitment (succession.go).
	Next map[string]string `json:"next,omitempty"`
}

// NewFilePinStore returns a store in dir/server-pins.json.
func NewFilePinStore(dir string) *FilePinStore {
	return &FilePinStore{Path: filepath.Join(dir, "server-pins.json")}
}

func (s *FilePinStore) read() (pinFile, error) {
	var pf pinFile
	f, err := os.Open(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return pf, nil
	}
	if err != nil {
		return pf, fmt.Errorf("rpc: pin file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPinFile+1))
	if err != nil {
		return pf, fmt.Errorf("rpc: pin file: %w", err)
	}
	if len(b) > maxPinFile {
		return pf, fmt.Errorf("rpc: pin file %s is larger than %d bytes", s.Path, maxPinFile)
	}
	if err := json.Unmarshal(b, &pf); err != nil {
		return pf, fmt.Errorf("rpc: pin file %s is damaged: %v", s.Path, err)
	}
	return pf, nil
}

// Pin implements PinStore.
func (s *FilePinStore) Pin(server string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pf, err := s.read()
	if err != nil {
		return "", false, err
	}
	fp, ok := pf.Servers[pinKey(server)]
	if !ok {
		return "", false, nil
	}
	fp, err = ParseFingerprint(fp)
	if err != nil {
		return "", false, fmt.Errorf("rpc: pin file %s: %v", s.Path, err)
	}
	return fp, true, nil
}

// SetPin implements PinStore. It replaces the file atomically.
func (s *FilePinStore) SetPin(server, fingerprint string) error {
	fp, err := ParseFingerprint(fingerprint)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pf, err := s.read()
	if err != nil {
		return err
	}
	if pf.Servers == nil {
		pf.Servers = make(map[string]string)
	}
	pf.Servers[pinKey(server)] = fp
	b, err := json.MarshalIndent(pf, "", "  ")
	if err != nil {
		return fmt.Errorf("rpc: pin file: %w", err)
	}
	return writeFileAtomic(s.Path, append(b, '\n'))
}

func pinKey(server string) string { return strings.ToLower(server) }

// writeFileAtomic writes data to a temporary file beside path with mode
// 0600, syncs it and renames it over path.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("rpc: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("rpc: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("rpc: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("rpc: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("rpc: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("rpc: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rpc: %w", err)
	}
	return nil
}

// Successor implements SuccessorStore.
func (s *FilePinStore) Successor(server string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pf, err := s.read()
	if err != nil {
		return "", err
	}
	n, ok := pf.Next[pinKey(server)]
	if !ok {
		return "", nil
	}
	if n, err = ParseFingerprint(n); err != nil {
		return "", fmt.Errorf("rpc: pin file %s: %v", s.Path, err)
	}
	return n, nil
}

// SetSuccessor implements SuccessorStore.
func (s *FilePinStore) SetSuccessor(server, next string) error {
	if next != "" {
		var err error
		if next, err = ParseFingerprint(next); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pf, err := s.read()
	if err != nil {
		return err
	}
	if pf.Next == nil {
		pf.Next = make(map[string]string)
	}
	if next == "" {
		delete(pf.Next, pinKey(server))
	} else {
		pf.Next[pinKey(server)] = next
	}
	b, err := json.MarshalIndent(pf, "", "  ")
	if err != nil {
		return fmt.Errorf("rpc: pin file: %w", err)
	}
	return writeFileAtomic(s.Path, append(b, '\n'))
}
