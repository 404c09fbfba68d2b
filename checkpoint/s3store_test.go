package checkpoint_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/megha-ml/megha/checkpoint"
	"github.com/megha-ml/megha/checkpoint/storetest"
	"github.com/megha-ml/megha/internal/s3test"
)

var s3Seq atomic.Int64

// newS3Store returns a store under a fresh prefix of srv's bucket, with
// the smallest part size S3 allows so that storetest.LargeSize goes up in
// three parts, in parallel.
func newS3Store(t *testing.T, srv *s3test.Server) *checkpoint.S3Store {
	t.Helper()
	s, err := checkpoint.NewS3Store(context.Background(), checkpoint.S3Config{
		Endpoint: srv.Endpoint,
		Bucket:   srv.Bucket,
		Prefix:   fmt.Sprintf("conformance/%d", s3Seq.Add(1)),
		Creds:    srv.Creds(),
		PartSize: 5 << 20,
		Threads:  3,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestS3StoreConformance runs the suite against a real S3 server, and
// against a mirror of it and a file store.
func TestS3StoreConformance(t *testing.T) {
	srv := s3test.Start(t)
	t.Run("S3", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) checkpoint.Store { return newS3Store(t, srv) })
	})
	t.Run("MirrorS3File", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) checkpoint.Store {
			return checkpoint.NewMirror(newS3Store(t, srv), open(t, "file://"+t.TempDir()))
		})
	})
}

// TestS3StoreOpen opens a store by URL with credentials from the
// environment, and checks that prefixes keep stores apart.
func TestS3StoreOpen(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	a := open(t, srv.URL("jobs/a"))
	if want := "s3://" + srv.Bucket + "/jobs/a?endpoint=" + srv.Endpoint + "&secure=false"; a.String() != want {
		t.Errorf("String() = %q, want %q", a, want)
	}
	if strings.Contains(a.String(), srv.SecretKey) || strings.Contains(a.String(), srv.AccessKey) {
		t.Errorf("String() %q holds credentials", a)
	}
	// String is a URL Open accepts, naming the same store.
	if again := open(t, a.String()); again.String() != a.String() {
		t.Errorf("Open(String()) = %s, want %s", again, a)
	}
	ab := open(t, srv.URL("jobs/ab"))
	root := open(t, srv.URL(""))
	storetest.Put(t, a, "x", []byte("a"))
	storetest.Put(t, ab, "x", []byte("ab"))
	if got := storetest.Keys(t, a, ""); len(got) != 1 || got[0] != "x" {
		t.Errorf("store of prefix jobs/a lists %q, want [x] (not jobs/ab's)", got)
	}
	if got := storetest.Keys(t, root, ""); strings.Join(got, " ") != "jobs/a/x jobs/ab/x" {
		t.Errorf("store without prefix lists %q", got)
	}
	if got := storetest.Get(t, root, "jobs/ab/x"); string(got) != "ab" {
		t.Errorf("Get(jobs/ab/x) = %q", got)
	}
}

// TestS3StoreErrors checks that credential and bucket errors say what to
// do and never hold the secret key.
func TestS3StoreErrors(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	const wrongSecret = "wrong-secret-Zq8v7Xc2Lk5Pp9Rr"

	check := func(t *testing.T, err error, want ...string) {
		t.Helper()
		if err == nil {
			t.Fatal("no error")
		}
		msg := err.Error()
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("error %q does not contain %q", msg, w)
			}
		}
		for _, secret := range []string{wrongSecret, srv.SecretKey} {
			if strings.Contains(msg, secret) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), secret) {
				t.Errorf("error %q holds a secret key", msg)
			}
		}
	}

	t.Run("WrongSecretFromEnv", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", wrongSecret)
		_, err := checkpoint.Open(ctx, srv.URL("p"))
		check(t, err, "check the credentials", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_USER", srv.Bucket)
	})
	t.Run("UnknownAccessKey", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "nobody")
		t.Setenv("AWS_SECRET_ACCESS_KEY", wrongSecret)
		_, err := checkpoint.Open(ctx, srv.URL("p"))
		check(t, err, "check the credentials", "AWS_SECRET_ACCESS_KEY")
	})
	t.Run("WrongSecretGiven", func(t *testing.T) {
		_, err := checkpoint.NewS3Store(ctx, checkpoint.S3Config{
			Endpoint: srv.Endpoint, Bucket: srv.Bucket,
			Creds: credentials.NewStaticV4(srv.AccessKey, wrongSecret, ""),
		})
		check(t, err, "check the credentials")
	})
	t.Run("NoSuchBucket", func(t *testing.T) {
		_, err := checkpoint.NewS3Store(ctx, checkpoint.S3Config{Endpoint: srv.Endpoint, Bucket: "no-such-bucket", Creds: srv.Creds()})
		check(t, err, `bucket "no-such-bucket" does not exist`, "create it")
	})
	t.Run("SmallPartSize", func(t *testing.T) {
		_, err := checkpoint.NewS3Store(ctx, checkpoint.S3Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket, Creds: srv.Creds(), PartSize: 1 << 20})
		check(t, err, "5 MiB")
	})
}
