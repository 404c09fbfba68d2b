package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// DefaultStoreURL is where checkpoints go when a job names no store: a
// directory under the working directory.
const DefaultStoreURL = "file://./.megha/checkpoints"

// urlForms lists the store URLs Open understands, for messages.
const urlForms = "file://DIR (file://./DIR for a relative path, file:///DIR for an absolute one), " +
	"s3://BUCKET/PREFIX?endpoint=HOST:PORT&secure=false&region=R, or mem://NAME"

// Open returns the store a URL names:
//
//	file://DIR                  a directory; file://./x and file://x are relative to the
//	                            working directory, file:///x is absolute
//	s3://BUCKET/PREFIX?endpoint=HOST:PORT&secure=BOOL&region=R
//	                            an S3 bucket; endpoint defaults to s3.amazonaws.com, secure
//	                            to true; credentials come from the environment (see
//	                            DefaultCredentials), never from the URL
//	mem://NAME                  an in-memory store shared by every Open of NAME in the
//	                            process, for tests and benchmarks
//
// Opening an S3 store checks that the bucket exists and the credentials
// work.
func Open(ctx context.Context, rawURL string) (Store, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		if rawURL == "" {
			return nil, fmt.Errorf("empty store URL: write %s", urlForms)
		}
		if !strings.Contains(rawURL, ":") {
			return nil, fmt.Errorf("store URL %q has no scheme: for a directory write file://%s", rawURL, rawURL)
		}
		return nil, fmt.Errorf("store URL has no \"://\": write %s", urlForms)
	}
	switch scheme {
	case "file":
		return openFile(rest)
	case "s3":
		return openS3(ctx, rest)
	case "mem":
		return openMem(rest)
	}
	return nil, fmt.Errorf("store URL: unknown scheme %q: write %s", scheme, urlForms)
}

// openFile opens file://rest. Everything after "file://" is the path, so
// that relative paths work; there is no host part.
func openFile(rest string) (Store, error) {
	if rest == "" {
		return nil, errors.New("store URL file://: no directory: write file://./DIR or file:///ABSOLUTE/DIR")
	}
	if strings.ContainsAny(rest, "?#") {
		return nil, fmt.Errorf("store URL file://%s: a file store takes no query or fragment: write file://DIR", strings.SplitN(rest, "?", 2)[0])
	}
	if first, _, _ := strings.Cut(rest, "/"); strings.Contains(first, "@") {
		return nil, errors.New("store URL file://: a file store takes a directory, not user@host: write file://./DIR or file:///ABSOLUTE/DIR")
	}
	return NewFileStore(rest)
}

// openS3 opens s3://rest.
func openS3(ctx context.Context, rest string) (Store, error) {
	u, err := url.Parse("s3://" + rest)
	if err != nil {
		// url's messages quote the URL, which could hold a secret.
		return nil, errors.New("store URL s3://…: not a valid URL: write s3://BUCKET/PREFIX?endpoint=HOST:PORT")
	}
	if u.User != nil {
		return nil, errors.New("store URL s3://…: credentials do not go in the URL (they would show in logs): " +
			"remove USER:PASSWORD@ and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment instead")
	}
	// name is the URL without its query, safe to print.
	name := "s3://" + u.Host + u.EscapedPath()
	if u.Host == "" {
		return nil, fmt.Errorf("store URL %s: no bucket: write s3://BUCKET/PREFIX?endpoint=HOST:PORT", name)
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("store URL %s: unexpected #fragment: remove it", name)
	}
	cfg := S3Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Secure: true}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("store URL %s: query does not parse: write ?endpoint=HOST:PORT&secure=false&region=R", name)
	}
	for k, v := range q {
		if len(v) != 1 {
			return nil, fmt.Errorf("store URL %s: parameter %q given %d times: give it once", name, k, len(v))
		}
		switch k {
		case "endpoint":
			cfg.Endpoint = v[0]
			if cfg.Endpoint == "" {
				return nil, fmt.Errorf("store URL %s: empty endpoint: write endpoint=HOST:PORT, or leave it out for Amazon S3", name)
			}
			if strings.Contains(cfg.Endpoint, "://") {
				return nil, fmt.Errorf("store URL %s: endpoint=%q has a scheme: write endpoint=HOST:PORT, and secure=false for plain HTTP", name, cfg.Endpoint)
			}
		case "secure":
			b, err := strconv.ParseBool(v[0])
			if err != nil {
				return nil, fmt.Errorf("store URL %s: secure=%q: write secure=true or secure=false", name, v[0])
			}
			cfg.Secure = b
		case "region":
			cfg.Region = v[0]
		default:
			if looksLikeCredential(k) {
				return nil, fmt.Errorf("store URL %s: credentials do not go in the URL (parameter %q): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment instead", name, k)
			}
			return nil, fmt.Errorf("store URL %s: unknown parameter %q: the parameters are endpoint, secure and region", name, k)
		}
	}
	return NewS3Store(ctx, cfg)
}

// looksLikeCredential reports whether a query parameter name is probably
// a credential, so that the message says where credentials go.
func looksLikeCredential(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"key", "secret", "password", "token", "user", "cred"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// memStores holds the stores of mem:// URLs, by name, for the process.
var memStores = struct {
	sync.Mutex
	m map[string]*MemStore
}{m: map[string]*MemStore{}}

// openMem opens mem://name, creating the store on first use.
func openMem(name string) (Store, error) {
	if name == "" {
		return nil, errors.New("store URL mem://: no name: write mem://NAME")
	}
	if strings.ContainsAny(name, "?#@") {
		return nil, errors.New("store URL mem://: the name may not hold '?', '#' or '@': write mem://NAME")
	}
	return OpenMem(name), nil
}

// OpenMem returns the process's in-memory store called name (the store of
// mem://name), creating it on first use.
func OpenMem(name string) *MemStore {
	memStores.Lock()
	defer memStores.Unlock()
	s, ok := memStores.m[name]
	if !ok {
		s = NewMemStore(name)
		memStores.m[name] = s
	}
	return s
}

// OpenAll opens every URL: one store as itself, several as a mirror (see
// NewMirror) in the order given, so the first is the one read and listed.
func OpenAll(ctx context.Context, urls []string) (Store, error) {
	if len(urls) == 0 {
		return nil, fmt.Errorf("no store URL: write at least one, for example %s", DefaultStoreURL)
	}
	stores := make([]Store, 0, len(urls))
	seen := map[string]bool{}
	for i, u := range urls {
		s, err := Open(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("store %d of %d: %w", i+1, len(urls), err)
		}
		if seen[s.String()] {
			return nil, fmt.Errorf("store %d of %d: %s is listed twice: list each store once", i+1, len(urls), s)
		}
		seen[s.String()] = true
		stores = append(stores, s)
	}
	if len(stores) == 1 {
		return stores[0], nil
	}
	return NewMirror(stores...), nil
}
