package server

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"qpchat/rpc"
)

// Names of the node's identity files in its data directory.
const (
	certFileName = "server-cert.pem"
	keyFileName  = "server-key.pem"
)

// maxPEMFile bounds identity files read from disk.
const maxPEMFile = 1 << 20

// loadOrCreateIdentity returns the node's self-signed certificate from
// dir, creating an Ed25519 key and certificate on first start. created
// reports whether it did. Clients pin the key, so the certificate's
// dates and names do not matter; it is valid for a long time so that
// clients verifying it anyway do not trip over it.
func loadOrCreateIdentity(dir string) (cert tls.Certificate, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return cert, false, fmt.Errorf("server: data directory: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, certFileName), filepath.Join(dir, keyFileName)
	_, errC := os.Stat(certPath)
	_, errK := os.Stat(keyPath)
	switch {
	case errC == nil && errK == nil:
		cert, err = loadIdentityFiles(certPath, keyPath)
		return cert, false, err
	case errors.Is(errC, fs.ErrNotExist) && errors.Is(errK, fs.ErrNotExist):
	default:
		return cert, false, fmt.Errorf("server: only one of %s and %s exists in %s: restore the other or remove both to make a new identity", certFileName, keyFileName, dir)
	}

	certPEM, keyPEM, err := newSelfSigned()
	if err != nil {
		return cert, false, err
	}
	// The key goes first with O_EXCL, so two nodes started on one
	// directory at once cannot mix two identities.
	if err := writeNewFile(keyPath, keyPEM); err != nil {
		return cert, false, err
	}
	if err := writeNewFile(certPath, certPEM); err != nil {
		os.Remove(keyPath)
		return cert, false, err
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return cert, false, fmt.Errorf("server: new identity: %w", err)
	}
	return cert, true, nil
}

func newSelfSigned() (certPEM, keyPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("server: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("server: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "qpchat node"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(30, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, nil, fmt.Errorf("server: create certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("server: marshal key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return certPEM, keyPEM, nil
}

// loadIdentityFiles reads a PEM certificate chain and its key.
func loadIdentityFiles(certPath, keyPath string) (tls.Certificate, error) {
	certPEM, err := readBounded(certPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readBounded(keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server: TLS identity %s / %s: %w", certPath, keyPath, err)
	}
	return cert, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, fmt.Errorf("server: read %s: %w", path, err)
	}
	if len(b) > maxPEMFile {
		return nil, fmt.Errorf("server: %s is larger than %d bytes", path, maxPEMFile)
	}
	return b, nil
}

// writeNewFile creates path with mode 0600, failing if it exists, and
// syncs it.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("server: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("server: sync %s: %w", path, err)
	}
	return f.Close()
}

// InitIdentity makes a node identity in dir as a node's first start
// would (the certificate committing to a next key, whose file it also
// writes), for identities shared by the nodes of a cluster (qpchat serve
// cluster-init), and returns its fingerprint. An identity already in dir
// is kept.
func InitIdentity(dir string) (fingerprint string, err error) {
	cfg := populateConfig(Config{DataDir: dir})
	cert, _, err := loadOrCreateIdentity(dir)
	if err != nil {
		return "", err
	}
	if cert, err = prepareSuccession(cfg, cert, cfg.Logger); err != nil {
		return "", err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return "", err
	}
	return rpc.Fingerprint(leaf), nil
}
