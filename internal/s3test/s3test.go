// Package s3test runs a real S3 server for one test (Start), or for a
// benchmark (Launch): MinIO by default, or Versity's S3 gateway with
// MEGHA_S3_SERVER=versitygw. Tests talk to it through the S3 API only, so
// any S3 server would do.
//
// The server binaries are not downloaded here: `make minio` builds MinIO
// into the cache directory this package looks in (MEGHA_MINIO overrides
// the path). A missing binary fails the test, it does not skip it.
package s3test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Versions of the servers, as installed into the cache directory.
const (
	// MinIOVersion is the module version of github.com/minio/minio that
	// `make minio` installs.
	MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"
	// VersityGWVersion is the version of github.com/versity/versitygw
	// used with MEGHA_S3_SERVER=versitygw.
	VersityGWVersion = "v1.8.0"
)

// Bucket is the bucket Start and Launch create.
const Bucket = "megha-test"

// startTimeout bounds how long a server may take to answer.
const startTimeout = 60 * time.Second

// Server is an S3 server running for one test, with one empty bucket.
type Server struct {
	// Endpoint is host:port, plain HTTP.
	Endpoint string
	// AccessKey and SecretKey are the server's root credentials, random
	// for each server.
	AccessKey, SecretKey string
	// Bucket is the bucket created for the test.
	Bucket string
	// Kind is "minio" or "versitygw".
	Kind string
	// Pid is the server's process ID (a benchmark reads its CPU time).
	Pid int
}

// URL returns the checkpoint store URL of prefix in the test bucket,
// s3://BUCKET/PREFIX?endpoint=HOST:PORT&secure=false.
func (s *Server) URL(prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&secure=false", s.Bucket, prefix, s.Endpoint)
}

// Creds returns the server's root credentials.
func (s *Server) Creds() *credentials.Credentials {
	return credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")
}

// SetEnv puts the server's credentials into AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY for the rest of the test (see testing.T.Setenv),
// for code that reads credentials from the environment.
func (s *Server) SetEnv(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
}

// Start starts an S3 server with a fresh data directory and a bucket, and
// stops it when the test ends. MEGHA_S3_SERVER chooses the server: "minio"
// (the default) or "versitygw". Launch does the same outside a test.
func Start(t testing.TB) *Server {
	t.Helper()
	s, stop, err := Launch(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() })
	return s
}
