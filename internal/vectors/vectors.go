// Package vectors locates the public conformance vectors that tests read.
//
// The vectors are not copied into the repository. A test names the
// environment variable that may point at the folder (QPCHAT_MLS_VECTORS,
// QPCHAT_OPAQUE_VECTORS, QPCHAT_HPKE_VECTORS) and the folder's default name
// in the "shared" directory beside the repository root. The root is found
// from the module root (the directory holding go.mod), not from the
// package folder, so every package resolves the same place.
//
// Without the folder a test skips with a clear message, except when
// QPCHAT_REQUIRE_VECTORS=1 (set by .ci/run), where a missing folder fails.
package vectors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// ModuleRoot returns the directory that holds the module's go.mod, walking
// up from the working directory. It returns "" when none is found.
func ModuleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Dir returns the vector folder named by the environment variable env, or
// by default the folder name def inside the "shared" directory beside the
// module root. When the folder is missing it skips the test, or fails it
// when QPCHAT_REQUIRE_VECTORS=1.
func Dir(t testing.TB, env, def string) string {
	t.Helper()
	dir := os.Getenv(env)
	if dir == "" {
		root := ModuleRoot()
		if root == "" {
			missing(t, env, "(module root not found)")
			return ""
		}
		dir = filepath.Join(filepath.Dir(root), "shared", def)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		missing(t, env, dir)
		return ""
	}
	return dir
}

func missing(t testing.TB, env, dir string) {
	t.Helper()
	if os.Getenv("QPCHAT_REQUIRE_VECTORS") == "1" {
		t.Fatalf("vectors: folder %s not found; set %s to the vector folder (QPCHAT_REQUIRE_VECTORS=1 forbids skipping)", dir, env)
	}
	t.Skipf("vectors: folder %s not found; set %s to the vector folder to run this test", dir, env)
}

// Load decodes the JSON file name from the folder given by env/def into v,
// rejecting unknown fields so a format change is noticed. It skips or fails
// as Dir does when the folder is missing; a missing file in a present folder
// always fails.
func Load(t testing.TB, env, def, name string, v any) {
	t.Helper()
	dir := Dir(t, env, def)
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("vectors: %v", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("vectors: decoding %s: %v", name, err)
	}
}

// Hex is a byte string that JSON-decodes from lowercase or uppercase hex.
type Hex []byte

// UnmarshalJSON implements json.Unmarshaler.
func (h *Hex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	out := make([]byte, len(s)/2)
	if _, err := hexDecode(out, s); err != nil {
		return err
	}
	*h = out
	return nil
}
