package mgmt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "nbfsm test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, pool
}

// TestHTTPSUsesTLS: https:// talks TLS, verified against the given roots;
// the same server is unreachable as http:// and with untrusted roots.
func TestHTTPSUsesTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	f := &fakeMgmt{priv: key(0x5e), registered: map[string]bool{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	mgmtpb.RegisterManagementServiceServer(srv, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	addr := lis.Addr().String()

	c := dial(t, "https://"+addr, ownPriv, WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if k, err := c.ServerKey(testCtx(t)); err != nil || k != f.priv.PublicKey() {
		t.Fatalf("ServerKey over TLS = %v, %v", k, err)
	}
	for name, c := range map[string]*Client{
		"plaintext to a TLS server": dial(t, "http://"+addr, ownPriv),
		"untrusted certificate":     dial(t, "https://"+addr, ownPriv, WithTLSConfig(&tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12})),
	} {
		if _, err := c.ServerKey(testCtx(t)); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: ServerKey = %v, want ErrUnavailable", name, err)
		}
	}
}
