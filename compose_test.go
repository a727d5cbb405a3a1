package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"go.yaml.in/yaml/v3"
)

// composeFile is the part of a compose file the test reads.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       string            `yaml:"build"`
		Hostname    string            `yaml:"hostname"`
		Profiles    []string          `yaml:"profiles"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Volumes     []string          `yaml:"volumes"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// serveEnvs returns the QPCHAT_* variables of the serve command's flags.
func serveEnvs(t *testing.T) map[string]bool {
	t.Helper()
	var cli CLI
	k, err := kong.New(&cli, kong.Name("qpchat"), kong.DefaultEnvars("QPCHAT"), kong.Exit(func(int) {}))
	if err != nil {
		t.Fatal(err)
	}
	envs := map[string]bool{}
	for _, n := range k.Model.Node.Children {
		if n.Name != "serve" {
			continue
		}
		for _, f := range n.Flags {
			for _, e := range f.Envs {
				envs[e] = true
			}
		}
	}
	return envs
}

// parseServe parses a serve command line with env set, as the binary in
// the image would.
func parseServe(t *testing.T, args []string, env map[string]string) *ServeCmd {
	t.Helper()
	for k := range env {
		t.Setenv(k, env[k])
	}
	var cli CLI
	cli.stdout, cli.stderr = io.Discard, io.Discard
	k, err := kong.New(&cli, kong.Name("qpchat"), kong.DefaultEnvars("QPCHAT"), kong.Exit(func(int) {}), kong.Bind(&cli.Globals))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Parse(args); err != nil {
		t.Fatalf("qpchat %s: %v", strings.Join(args, " "), err)
	}
	for k := range env {
		os.Unsetenv(k)
	}
	return &cli.Serve
}

// mountOf splits a short volume syntax "SRC:DST[:ro]".
func mountOf(v string) (src, dst string, ro bool) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 {
		return v, "", false
	}
	return parts[0], parts[1], len(parts) > 2 && parts[2] == "ro"
}

// TestComposeClusterConsistent: docker-compose.cluster.yml runs three
// nodes of one cluster whose flags and variables are the binary's real
// ones, each node named among the others' peers on the port it listens
// on, with its own data volume and published port, all mounting
// read-only the volume where the init service's cluster-init writes, as
// the image's user, which the Dockerfile makes.
func TestComposeClusterConsistent(t *testing.T) {
	raw, err := os.ReadFile("docker-compose.cluster.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatal(err)
	}
	envs := serveEnvs(t)
	for _, v := range regexp.MustCompile(`QPCHAT_[A-Z0-9_]+`).FindAllString(string(raw), -1) {
		if !envs[v] {
			t.Errorf("docker-compose.cluster.yml sets %s, which no serve flag reads", v)
		}
	}

	init, ok := cf.Services["init"]
	if !ok || !slices.Contains(init.Profiles, "init") {
		t.Fatal("no init service in its own profile (it must run once, not on every up)")
	}
	parseServe(t, init.Command, init.Environment) // real flags
	if len(init.Command) < 4 || init.Command[1] != "cluster-init" || init.Command[2] != "--out" {
		t.Fatalf("init runs %v, want serve cluster-init --out DIR", init.Command)
	}
	out := init.Command[3]
	var filesVolume, filesSub string
	for _, v := range init.Volumes {
		src, dst, _ := mountOf(v)
		if rel, err := filepath.Rel(dst, out); err == nil && !strings.HasPrefix(rel, "..") {
			filesVolume, filesSub = src, rel
		}
	}
	if filesVolume == "" {
		t.Fatalf("init writes %s outside its volumes %v", out, init.Volumes)
	}

	nodes := []string{"n1", "n2", "n3"}
	dataVolumes, hostPorts := map[string]bool{}, map[string]bool{}
	for _, name := range nodes {
		s, ok := cf.Services[name]
		if !ok {
			t.Fatalf("no service %s", name)
		}
		if s.Image != init.Image {
			t.Errorf("%s runs image %q, init %q", name, s.Image, init.Image)
		}
		c := parseServe(t, s.Command, s.Environment)
		if !c.clustered() || c.ClusterName == "" {
			t.Fatalf("%s is not a cluster node: %v %v", name, s.Command, s.Environment)
		}
		_, listenPort, err := net.SplitHostPort(c.ClusterListen)
		if err != nil {
			t.Fatal(err)
		}
		for _, other := range nodes {
			if !slices.Contains(strings.Split(c.ClusterPeers, ","), cf.Services[other].Hostname+":"+listenPort) {
				t.Errorf("%s's --cluster-peers %q lacks %s on port %s", name, c.ClusterPeers, other, listenPort)
			}
		}
		if c.ClusterReplicas != 3 {
			t.Errorf("%s keeps %d copies of the log, want 3", name, c.ClusterReplicas)
		}
		// The cluster files: read-only, from the volume init writes, at
		// the place init writes them.
		filesOK := false
		for _, v := range s.Volumes {
			src, dst, ro := mountOf(v)
			switch {
			case src == filesVolume:
				if !ro {
					t.Errorf("%s mounts the cluster files writable", name)
				}
				if path.Join(dst, filesSub) == c.ClusterFiles {
					filesOK = true
				}
			case dst == c.Data:
				if dataVolumes[src] {
					t.Errorf("%s shares its data volume %s", name, src)
				}
				dataVolumes[src] = true
				if _, ok := cf.Volumes[src]; !ok {
					t.Errorf("%s's data volume %s is not declared", name, src)
				}
			}
		}
		if !filesOK {
			t.Errorf("%s: --cluster-files %s is not where init's %s lands (volumes %v)", name, c.ClusterFiles, out, s.Volumes)
		}
		if !dataVolumes[filepath.Base(name)+"-data"] {
			t.Errorf("%s has no data volume at %s: %v", name, c.Data, s.Volumes)
		}
		_, port, _ := net.SplitHostPort(c.Listen)
		published := false
		for _, p := range s.Ports {
			host, inner, ok := strings.Cut(strings.TrimSuffix(p, "/udp"), ":")
			if ok && strings.HasSuffix(p, "/udp") && inner == port {
				published = !hostPorts[host]
				hostPorts[host] = true
			}
		}
		if !published {
			t.Errorf("%s does not publish its QUIC port %s/udp on a port of its own: %v", name, port, s.Ports)
		}
	}

	// The image: its user owns /data (mode 0700); the variables it sets
	// are real flags'.
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"USER 65532:65532", "--chown=65532:65532 /out/data /data", "mkdir -m 0700 /out/data"} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, v := range regexp.MustCompile(`QPCHAT_[A-Z0-9_]+`).FindAllString(string(df), -1) {
		if !envs[v] {
			t.Errorf("Dockerfile sets %s, which no serve flag reads", v)
		}
	}
}

// TestClusterFilesReadOnly: a node given a read-only copy of
// cluster-init's directory (--cluster-files, as the compose file mounts
// it) copies the store key and the identity into its empty data
// directory, mode 0600, and reads the route files in place.
func TestClusterFilesReadOnly(t *testing.T) {
	dir := t.TempDir()
	files := filepath.Join(dir, "files")
	var stdout bytes.Buffer
	if code := run([]string{"serve", "cluster-init", "--out", files}, &stdout, io.Discard); code != 0 {
		t.Fatalf("cluster-init: exit %d: %s", code, stdout.String())
	}
	if err := os.Chmod(files, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(files, 0o700) })
	data := filepath.Join(dir, "data")
	copied, err := copySharedFiles(data, files)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(copied, sharedFiles) {
		t.Errorf("copied %v, want %v", copied, sharedFiles)
	}
	for _, name := range sharedFiles {
		a, _ := os.ReadFile(filepath.Join(files, name))
		fi, err := os.Stat(filepath.Join(data, name))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(data, name))
		if !bytes.Equal(a, b) || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s copied with mode %04o, same content %v", name, fi.Mode().Perm(), bytes.Equal(a, b))
		}
	}
	// Again: nothing to copy, nothing replaced.
	if copied, err := copySharedFiles(data, files); err != nil || len(copied) != 0 {
		t.Errorf("second start copied %v, %v", copied, err)
	}
	f := ServeClusterFlags{ClusterName: "c", ClusterListen: "127.0.0.1:0", ClusterPeers: "127.0.0.1:1", ClusterFiles: files}
	if _, err := f.embeddedConfig(data, nil); err != nil {
		t.Errorf("route files from the read-only directory: %v", err)
	}
	// A shared file others may read is refused.
	os.Chmod(files, 0o700)
	os.Chmod(filepath.Join(files, "node.key"), 0o644)
	if _, err := copySharedFiles(filepath.Join(dir, "data2"), files); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("copying a key others may read: %v", err)
	}
}
