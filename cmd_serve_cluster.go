package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"qpchat/node/cluster"
	"qpchat/node/server"
	"qpchat/node/store"
)

// ServeClusterFlags make `qpchat serve` one node of a cluster whose store
// is replicated on NATS JetStream (README.md, Running a cluster): either
// an embedded NATS server joined to its peers (--cluster-name), or an
// existing NATS cluster (--nats). Without them nothing of NATS starts.
type ServeClusterFlags struct {
	ClusterName      string `placeholder:"NAME" help:"Run as a node of the cluster NAME: an embedded NATS JetStream server, its data under --data, replicates the store with the --cluster-peers. Every node needs a copy of the files serve cluster-init made."`
	ClusterListen    string `default:"0.0.0.0:7422" placeholder:"HOST:PORT" help:"TCP address the embedded NATS server takes routes from its peers on (TLS both ways with the cluster's route key)."`
	ClusterPeers     string `placeholder:"HOST:PORT,..." help:"Route addresses of the cluster's nodes, comma-separated (this node's own may be listed)."`
	ClusterAdvertise string `placeholder:"HOST:PORT" help:"Route address the peers are told to reach this node at, if not --cluster-listen (behind NAT, a port mapping or a proxy): list it in the peers' --cluster-peers."`
	ClusterFiles     string `type:"path" placeholder:"DIR" help:"Directory holding route.pem and route-password from serve cluster-init (it may be read-only); node.key, server-cert.pem and server-key.pem found there are copied into a data directory that lacks them. Default: the data directory."`
	ClusterReplicas  int    `default:"3" help:"Copies of the store's log the cluster keeps (at most the number of nodes; 3 survives the loss of one node)."`
	NATS             string `name:"nats" placeholder:"URL" help:"Keep the store on an existing NATS JetStream cluster at URL (nats:// or tls://) instead of embedding a NATS server."`
	NATSCreds        string `name:"nats-creds" type:"path" placeholder:"FILE" help:"NATS credentials file (user JWT and seed) for --nats."`
	NATSCA           string `name:"nats-ca" type:"path" placeholder:"FILE" help:"PEM CA certificates to verify the --nats servers with."`
}

// Files of a cluster made by serve cluster-init.
const (
	routeKeyFile      = "route.pem"      // certificate and key every node's routes use
	routePasswordFile = "route-password" // routes' password
	clusterNodeFile   = "cluster-node"   // this node's NATS server name (made on first start)
	replicaFile       = "replica.db"     // the node's replica of the store
	// clusterRestoreFile is a backup that serve restore checked and
	// installed, waiting to be written into a fresh cluster's log.
	clusterRestoreFile = "cluster-restore.db"
	maxClusterFile     = 64 << 10
)

// clustered reports whether the flags ask for a cluster store.
func (f *ServeClusterFlags) clustered() bool { return f.ClusterName != "" || f.NATS != "" }

// clusterStore is what a cluster node keeps on NATS JetStream: the
// store's log and the shared rate-limit buckets.
type clusterStore struct {
	log   *cluster.Log
	rates *cluster.RateStore
	node  *cluster.Node // the embedded server, nil with --nats
}

// ClusterStatus gives the node's metrics the state of the store's log
// (server.ClusterInfo).
func (cs *clusterStore) ClusterStatus(ctx context.Context) (server.ClusterStatus, error) {
	st, err := cs.log.Status(ctx)
	out := server.ClusterStatus{Node: st.Server, Leader: st.Leader, LastEntry: st.LastSeq}
	for _, r := range st.Replicas {
		out.Peers = append(out.Peers, server.ClusterPeer{Name: r.Name, Current: r.Current, Offline: r.Offline, Active: r.Active, Lag: r.Lag})
	}
	return out, err
}

// startCluster starts what the flags ask for and opens the store's log
// and the rate-limit buckets on it. stop closes the connection and stops
// the embedded server.
func (f *ServeClusterFlags) startCluster(ctx context.Context, dataDir string, log *slog.Logger) (cs *clusterStore, stop func(), err error) {
	switch {
	case f.ClusterName != "" && f.NATS != "":
		return nil, nil, errors.New("give --cluster-name (embedded NATS) or --nats (existing NATS), not both")
	case f.ClusterReplicas < 1 || f.ClusterReplicas > 5:
		return nil, nil, fmt.Errorf("--cluster-replicas must be 1 to 5, got %d", f.ClusterReplicas)
	case f.NATS == "" && (f.NATSCreds != "" || f.NATSCA != ""):
		return nil, nil, errors.New("--nats-creds and --nats-ca need --nats")
	}
	var nc *nats.Conn
	var node *cluster.Node
	if f.NATS != "" {
		opts := []nats.Option{nats.Name("qpchat"), nats.MaxReconnects(-1)}
		if f.NATSCreds != "" {
			opts = append(opts, nats.UserCredentials(f.NATSCreds))
		}
		if f.NATSCA != "" {
			opts = append(opts, nats.RootCAs(f.NATSCA))
		}
		if nc, err = nats.Connect(f.NATS, opts...); err != nil {
			return nil, nil, fmt.Errorf("connecting to --nats: %w", err)
		}
	} else {
		cfg, err := f.embeddedConfig(dataDir, log)
		if err != nil {
			return nil, nil, err
		}
		if node, err = cluster.Start(cfg); err != nil {
			return nil, nil, err
		}
		if nc, err = node.Connect(); err != nil {
			node.Shutdown()
			return nil, nil, err
		}
	}
	stop = func() {
		nc.Close()
		if node != nil {
			node.Shutdown()
		}
	}
	octx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cs = &clusterStore{node: node}
	if cs.log, err = cluster.OpenLog(octx, nc, cluster.DefaultStream, f.ClusterReplicas); err != nil {
		stop()
		return nil, nil, fmt.Errorf("%w (are enough cluster nodes up?)", err)
	}
	if cs.rates, err = cluster.OpenRateStore(octx, nc, cluster.DefaultRateStream, f.ClusterReplicas); err != nil {
		stop()
		return nil, nil, err
	}
	return cs, stop, nil
}

// embeddedConfig is the embedded NATS server's configuration: its name
// (kept in the data directory), routes with TLS and a password from the
// cluster files.
func (f *ServeClusterFlags) embeddedConfig(dataDir string, log *slog.Logger) (cluster.Config, error) {
	var peers []string
	for _, p := range strings.Split(f.ClusterPeers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return cluster.Config{}, errors.New("--cluster-name needs --cluster-peers")
	}
	files := f.ClusterFiles
	if files == "" {
		files = dataDir
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return cluster.Config{}, err
	}
	name, err := nodeName(dataDir)
	if err != nil {
		return cluster.Config{}, err
	}
	routeTLS, pin, err := loadRouteTLS(filepath.Join(files, routeKeyFile))
	if err != nil {
		return cluster.Config{}, err
	}
	pw, err := routePassword(filepath.Join(files, routePasswordFile))
	if err != nil {
		return cluster.Config{}, err
	}
	return cluster.Config{
		Name: name, Cluster: f.ClusterName, Listen: f.ClusterListen, Advertise: f.ClusterAdvertise, Peers: peers,
		DataDir: dataDir, RouteTLS: routeTLS, RoutePins: []string{pin},
		RouteUser: "qpchat", RoutePassword: pw, Logger: log,
	}, nil
}

// nodeName returns this node's NATS server name, made at random on the
// first start and kept in the data directory (JetStream knows its peers
// by name, so it must not change).
func nodeName(dataDir string) (string, error) {
	path := filepath.Join(dataDir, clusterNodeFile)
	b, err := readBounded(path)
	if errors.Is(err, os.ErrNotExist) {
		r := make([]byte, 8)
		if _, err := rand.Read(r); err != nil {
			return "", err
		}
		name := "qpchat-" + hex.EncodeToString(r)
		if err := writeNewFile(path, []byte(name+"\n")); err != nil {
			return "", err
		}
		return name, nil
	}
	if err != nil {
		return "", err
	}
	name := strings.TrimSpace(string(b))
	if name == "" || strings.ContainsAny(name, " \t.*>") {
		return "", fmt.Errorf("%s: bad node name %q", path, name)
	}
	return name, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxClusterFile+1))
	if err == nil && len(b) > maxClusterFile {
		err = fmt.Errorf("%s is larger than %d bytes", path, maxClusterFile)
	}
	return b, err
}

// routePassword reads the routes' password, kept in a file only its
// owner may read.
func routePassword(path string) (string, error) {
	b, err := readSecretFile(path)
	if err != nil {
		return "", fmt.Errorf("cluster file: %w (copy it from the directory serve cluster-init made)", err)
	}
	pw := strings.TrimSpace(string(b))
	if len(pw) < 32 {
		return "", fmt.Errorf("%s: too short", path)
	}
	return pw, nil
}

// loadRouteTLS reads the cluster's route certificate and key: every node
// presents it and accepts only peers presenting it (pinned by the
// SHA-256 of its SubjectPublicKeyInfo, the fingerprint nats-server's
// pinned_certs take), both ways.
func loadRouteTLS(path string) (*tls.Config, string, error) {
	b, err := readSecretFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("cluster file: %w (copy it from the directory serve cluster-init made)", err)
	}
	cert, err := tls.X509KeyPair(b, b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	pin := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	// The route certificate is its own CA, under a name of its own that
	// every node asks for whatever the peer's address; nats-server also
	// checks the pin after the handshake.
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS13,
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ServerName:   routeServerName,
	}, hex.EncodeToString(pin[:]), nil
}

// routeServerName is the name in the route certificate.
const routeServerName = "routes.qpchat-cluster.invalid"

// writeNewFile creates path with mode 0600; it must not exist.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// ServeClusterInitCmd makes the files every node of a cluster shares.
type ServeClusterInitCmd struct {
	Out string `required:"" type:"path" placeholder:"DIR" help:"Directory to create (mode 0700) with the cluster's shared files."`
}

// Run writes the store key, the node identity clients pin, its next key,
// and the route key and password into a new directory.
func (c *ServeClusterInitCmd) Run(g *Globals, sc *ServeCmd) error {
	sc.ranSub = true
	if err := os.Mkdir(c.Out, 0o700); err != nil {
		return fmt.Errorf("creating %s (it must not exist): %w", c.Out, err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	if err := writeNewFile(filepath.Join(c.Out, "node.key"), key); err != nil {
		return err
	}
	clear(key)
	fp, err := server.InitIdentity(c.Out)
	if err != nil {
		return err
	}
	routePEM, err := newRouteKey()
	if err != nil {
		return err
	}
	if err := writeNewFile(filepath.Join(c.Out, routeKeyFile), routePEM); err != nil {
		return err
	}
	pw := make([]byte, 32)
	if _, err := rand.Read(pw); err != nil {
		return err
	}
	if err := writeNewFile(filepath.Join(c.Out, routePasswordFile), []byte(hex.EncodeToString(pw)+"\n")); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "cluster files in %s\n", c.Out)
	fmt.Fprintf(g.stdout, "fingerprint %s\n", fp)
	fmt.Fprintf(g.stdout, "move %s offline (it is needed only to rotate the identity), then copy the other files, mode 0600, into each node's data directory (mode 0700) before its first start:\n", "server-next-key.pem")
	fmt.Fprintln(g.stdout, "  node.key server-cert.pem server-key.pem route.pem route-password")
	return nil
}

// newRouteKey makes the cluster's route certificate and key (ECDSA P-256,
// self-signed, one PEM file).
func newRouteKey() ([]byte, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "qpchat cluster routes"},
		DNSNames:              []string{routeServerName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(100, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...), nil
}

// seedRestore writes a backup that serve restore left in the data
// directory into the cluster's log (store.SeedLog), once: it is then
// kept as cluster-restore.db.done. The log must be empty or hold the same
// restore (written by another node given the same backup, or by this
// one before it stopped).
func seedRestore(ctx context.Context, l store.Log, dataDir string, stdout io.Writer) error {
	path := filepath.Join(dataDir, clusterRestoreFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	n, err := store.SeedLog(sctx, l, path)
	if err != nil {
		return fmt.Errorf("restoring %s into the cluster: %w", path, err)
	}
	if err := os.Rename(path, path+".done"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored the backup into the cluster's log (%d entries)\n", n)
	return nil
}

// sharedFiles are the files of serve cluster-init that a node keeps in
// its data directory: the store key and the identity clients pin.
var sharedFiles = []string{"node.key", "server-cert.pem", "server-key.pem"}

// copySharedFiles copies the shared files a node's data directory lacks
// from --cluster-files (mode 0600, which they must have there too), so a
// node can start from a read-only copy of cluster-init's directory (as
// docker-compose.cluster.yml mounts it). Files the data directory holds
// already are kept.
func copySharedFiles(dataDir, filesDir string) ([]string, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	var copied []string
	for _, name := range sharedFiles {
		dst := filepath.Join(dataDir, name)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		src := filepath.Join(filesDir, name)
		fi, err := os.Stat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return copied, err
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return copied, fmt.Errorf("%s is readable or writable by group or others (mode %04o); run chmod 600 %s", src, perm, src)
		}
		b, err := readBounded(src)
		if err != nil {
			return copied, err
		}
		if err := writeNewFile(dst, b); err != nil {
			return copied, err
		}
		copied = append(copied, name)
	}
	return copied, nil
}
