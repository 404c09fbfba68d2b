package s3test_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/megha-ml/megha/internal/s3test"
)

func TestStart(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	c, err := minio.New(srv.Endpoint, &minio.Options{Creds: srv.Creds()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, srv.Bucket, "k", bytes.NewReader([]byte("v")), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	obj, err := c.GetObject(ctx, srv.Bucket, "k", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if b, err := io.ReadAll(obj); err != nil || string(b) != "v" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if want := "s3://" + srv.Bucket + "/p?endpoint=" + srv.Endpoint + "&secure=false"; srv.URL("p") != want {
		t.Fatalf("URL = %q, want %q", srv.URL("p"), want)
	}
}

// Two servers in one test get their own ports and data.
func TestTwoServers(t *testing.T) {
	a, b := s3test.Start(t), s3test.Start(t)
	if a.Endpoint == b.Endpoint || a.SecretKey == b.SecretKey {
		t.Fatalf("servers share an endpoint or credentials: %s, %s", a.Endpoint, b.Endpoint)
	}
}
