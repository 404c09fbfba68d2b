package checkpoint_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/megha-ml/megha/checkpoint"
	"github.com/megha-ml/megha/checkpoint/storetest"
)

func open(t *testing.T, url string) checkpoint.Store {
	t.Helper()
	s, err := checkpoint.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	return s
}

var memSeq atomic.Int64

// TestMemStoreConformance runs the suite against mem:// stores.
func TestMemStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) checkpoint.Store {
		return open(t, fmt.Sprintf("mem://conformance-%d", memSeq.Add(1)))
	})
}

// TestFileStoreConformance runs the suite against file:// stores.
func TestFileStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) checkpoint.Store {
		return open(t, "file://"+t.TempDir())
	})
}

func TestOpenFileURLs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for url, want := range map[string]string{
		"file://./x":               filepath.Join(dir, "x"),
		"file://y":                 filepath.Join(dir, "y"),
		"file://y/z/":              filepath.Join(dir, "y", "z"),
		"file://" + dir + "/abs":   filepath.Join(dir, "abs"),
		checkpoint.DefaultStoreURL: filepath.Join(dir, ".megha", "checkpoints"),
		"file://../" + filepath.Base(dir) + "/up": filepath.Join(dir, "up"),
	} {
		s := open(t, url)
		if s.String() != "file://"+want {
			t.Errorf("Open(%q) = %s, want file://%s", url, s, want)
		}
	}
}

func TestOpenMemIsShared(t *testing.T) {
	a := open(t, "mem://shared-test")
	b := open(t, "mem://shared-test")
	storetest.Put(t, a, "k", []byte("v"))
	if got := storetest.Get(t, b, "k"); string(got) != "v" {
		t.Fatalf("a second Open of mem://shared-test sees %q", got)
	}
	if c := open(t, "mem://other-test"); len(storetest.Keys(t, c, "")) != 0 {
		t.Fatal("mem://other-test shares objects with mem://shared-test")
	}
}

// TestOpenErrors checks that a wrong URL gets a message naming the part
// that is wrong and what to write, and never echoes credentials.
func TestOpenErrors(t *testing.T) {
	const secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
	for _, tc := range []struct {
		url  string
		want []string
	}{
		{"", []string{"empty store URL", "file://"}},
		{"./ckpt", []string{"no scheme", "file://./ckpt"}},
		{"C:ckpt", []string{"no \"://\"", "file://DIR"}},
		{"ftp://host/x", []string{`unknown scheme "ftp"`, "file://DIR", "s3://BUCKET", "mem://NAME"}},
		{"file://", []string{"no directory", "file://./DIR"}},
		{"file://./x?mode=fast", []string{"file://./x", "no query"}},
		{"file://user:" + secret + "@host/x", []string{"not user@host"}},
		{"s3://", []string{"no bucket", "s3://BUCKET/PREFIX"}},
		{"s3:///prefix", []string{"no bucket"}},
		{"s3://b/p?endpoint=127.0.0.1:1&part=5", []string{"s3://b/p", `unknown parameter "part"`, "endpoint, secure and region"}},
		{"s3://b/p?secure=maybe", []string{`secure="maybe"`, "secure=true or secure=false"}},
		{"s3://b/p?endpoint=http://127.0.0.1:9000", []string{"has a scheme", "endpoint=HOST:PORT", "secure=false"}},
		{"s3://b/p?endpoint=", []string{"empty endpoint"}},
		{"s3://b/p?region=a&region=b", []string{`"region" given 2 times`}},
		{"s3://AKIAEXAMPLE:" + secret + "@b/p", []string{"credentials do not go in the URL", "AWS_SECRET_ACCESS_KEY"}},
		{"s3://b/p?secret_key=" + secret, []string{"credentials do not go in the URL", `"secret_key"`}},
		{"s3://Bad_Bucket/p?endpoint=127.0.0.1:1", []string{`bucket "Bad_Bucket"`}},
		{"s3://bkt/a//b?endpoint=127.0.0.1:1", []string{`prefix "a//b"`}},
		{"mem://", []string{"no name", "mem://NAME"}},
	} {
		_, err := checkpoint.Open(context.Background(), tc.url)
		if err == nil {
			t.Errorf("Open(%q) succeeded", tc.url)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Open(%q) = %q, want it to contain %q", tc.url, err, w)
			}
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "AKIAEXAMPLE") {
			t.Errorf("Open(%q) echoes credentials: %q", tc.url, err)
		}
	}
}

func TestOpenAll(t *testing.T) {
	ctx := context.Background()
	if _, err := checkpoint.OpenAll(ctx, nil); err == nil || !strings.Contains(err.Error(), checkpoint.DefaultStoreURL) {
		t.Errorf("OpenAll(nil) = %v, want an error suggesting %s", err, checkpoint.DefaultStoreURL)
	}
	one, err := checkpoint.OpenAll(ctx, []string{"mem://openall-a"})
	if err != nil || one.String() != "mem://openall-a" {
		t.Fatalf("OpenAll of one URL = %v, %v; want the store itself", one, err)
	}
	dir := t.TempDir()
	two, err := checkpoint.OpenAll(ctx, []string{"file://" + dir, "mem://openall-b"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "file://" + dir + " + mem://openall-b"; two.String() != want {
		t.Fatalf("OpenAll of two URLs = %s, want %s", two, want)
	}
	storetest.Put(t, two, "k", []byte("v"))
	storetest.Get(t, open(t, "mem://openall-b"), "k")
	storetest.Get(t, open(t, "file://"+dir), "k")

	if _, err := checkpoint.OpenAll(ctx, []string{"mem://openall-c", "mem://openall-c"}); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("OpenAll of a duplicate = %v, want a listed-twice error", err)
	}
	if _, err := checkpoint.OpenAll(ctx, []string{"mem://openall-d", "ftp://x"}); err == nil || !strings.Contains(err.Error(), "store 2 of 2") {
		t.Errorf("OpenAll with a bad second URL = %v, want an error naming it", err)
	}
}
