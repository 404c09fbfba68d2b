package coordinator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/megha-ml/megha/client"
	"google.golang.org/grpc/codes"
)

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its
// key, returning their paths; the certificate is its own CA.
func writeSelfSigned(t *testing.T) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "megha-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func TestTLS(t *testing.T) {
	cert, key := writeSelfSigned(t)
	s := startServer(t, "n1", true, func(c *ServerConfig) { c.TLSCert, c.TLSKey = cert, key })
	waitFor(t, "leadership", 10*time.Second, s.Node().IsLeader)

	c, err := client.New(client.Config{Addrs: []string{s.Addr()}, Token: tokAcme, TLSCAFile: cert})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Submit(ctxT(t), validSpec("over-tls"), ""); err != nil {
		t.Fatalf("submit over TLS: %v", err)
	}
	// A plaintext client cannot talk to a TLS server.
	plain := newClient(t, tokAcme, s.Addr())
	ctx, cancel := contextWithTimeout(2 * time.Second)
	defer cancel()
	if _, err := plain.Members(ctx); err == nil || codeOf(err) == codes.OK {
		t.Fatal("plaintext client reached a TLS server")
	}
}
