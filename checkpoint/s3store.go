package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Defaults of S3Config.
const (
	// DefaultS3Endpoint is the endpoint of Amazon S3.
	DefaultS3Endpoint = "s3.amazonaws.com"
	// DefaultS3PartSize is the part size of multipart uploads: objects
	// larger than this go up in parts, several at a time.
	DefaultS3PartSize = 16 << 20
	// DefaultS3Threads is how many parts of one object go up at once.
	DefaultS3Threads = 4
	// minS3PartSize is the smallest part S3 accepts (but for the last).
	minS3PartSize = 5 << 20
)

// credentialsHelp says where S3Store looks for credentials, for messages.
const credentialsHelp = "megha reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), " +
	"then MINIO_ROOT_USER and MINIO_ROOT_PASSWORD, then MINIO_ACCESS_KEY and MINIO_SECRET_KEY, " +
	"then the AWS shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials, profile AWS_PROFILE), " +
	"then the instance's IAM role"

// S3Config configures an S3Store.
type S3Config struct {
	// Endpoint is the S3 server as host:port, without a scheme;
	// DefaultS3Endpoint if empty.
	Endpoint string
	// Bucket holds the objects; it must exist.
	Bucket string
	// Prefix, if set, is prepended to every key with a slash: key K is
	// object Prefix/K. Leading and trailing slashes are ignored.
	Prefix string
	// Secure selects HTTPS.
	Secure bool
	// Region is the bucket's region; empty asks the server.
	Region string
	// Creds are the credentials; nil means DefaultCredentials.
	Creds *credentials.Credentials
	// PartSize is the part size of multipart uploads, at least 5 MiB;
	// DefaultS3PartSize if zero.
	PartSize uint64
	// Threads is how many parts of one object are uploaded at once;
	// DefaultS3Threads if zero.
	Threads uint
}

// S3Store is a Store in an S3 bucket (Amazon S3, MinIO or any server
// speaking the S3 API). It is safe for concurrent use.
//
// S3 itself makes every PUT all or nothing: a single PUT that is cut off
// stores nothing, and a multipart upload becomes visible only when it is
// completed (a failed one is aborted). minio-go aborts with the Put's
// context, so parts of an upload cut off by cancelling that context may
// stay on the server, invisible, until a bucket lifecycle rule
// (AbortIncompleteMultipartUpload) removes them.
type S3Store struct {
	client   *minio.Client
	cfg      S3Config
	prefix   string // cfg.Prefix without surrounding slashes
	ownCreds bool   // credentials came from the caller, not the environment
}

// DefaultCredentials returns the credential chain S3Store uses when
// S3Config.Creds is nil: the AWS environment variables, the MinIO ones,
// the AWS shared credentials file, then the IAM role of the machine.
func DefaultCredentials() *credentials.Credentials {
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.EnvMinio{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{},
	})
}

// NewS3Store connects to cfg.Endpoint and checks that cfg.Bucket exists
// and that the credentials may read it.
func NewS3Store(ctx context.Context, cfg S3Config) (*S3Store, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultS3Endpoint
	}
	if strings.Contains(cfg.Endpoint, "://") {
		return nil, fmt.Errorf("s3 store: endpoint %q has a scheme: write only host:port, and secure=false for plain HTTP", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3 store: no bucket: write s3://BUCKET/PREFIX")
	}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("s3 store: bucket %q: %v", cfg.Bucket, err)
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if err := checkKey(prefix); err != nil {
			return nil, fmt.Errorf("s3 store: prefix %q: %w", cfg.Prefix, err)
		}
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultS3PartSize
	}
	if cfg.PartSize < minS3PartSize {
		return nil, fmt.Errorf("s3 store: part size %d bytes is below the S3 minimum of 5 MiB", cfg.PartSize)
	}
	if cfg.Threads == 0 {
		cfg.Threads = DefaultS3Threads
	}
	s := &S3Store{cfg: cfg, prefix: prefix, ownCreds: cfg.Creds != nil}
	creds := cfg.Creds
	if creds == nil {
		creds = DefaultCredentials()
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{Creds: creds, Secure: cfg.Secure, Region: cfg.Region})
	if err != nil {
		return nil, fmt.Errorf("%s: endpoint %q: %v: write host:port", s, cfg.Endpoint, err)
	}
	s.client = client
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, s.mapError("checking the bucket", "", err)
	}
	if !ok {
		return nil, s.noBucket()
	}
	return s, nil
}

// String returns the store as a URL that Open accepts, without
// credentials: s3://BUCKET/PREFIX?endpoint=HOST:PORT, with &secure=false
// for plain HTTP and &region=R if a region was configured.
func (s *S3Store) String() string {
	q := "?endpoint=" + s.cfg.Endpoint
	if !s.cfg.Secure {
		q += "&secure=false"
	}
	if s.cfg.Region != "" {
		q += "&region=" + url.QueryEscape(s.cfg.Region)
	}
	return "s3://" + s.cfg.Bucket + "/" + s.prefix + q
}

// object returns the object name of key (or of a key prefix).
func (s *S3Store) object(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

// Put uploads size bytes from r under key: in one PUT up to the part size,
// above it in parts, Threads at a time. A negative size means "whatever r
// holds" and always goes in parts.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: put %s: %w", s, key, err)
	}
	src := &exactReader{r: ctxReader{ctx, r}, left: size}
	if size == 0 {
		// Nothing will read an empty body, so look for extra bytes now.
		if err := src.checkEOF(); err != nil {
			return fmt.Errorf("%s: put %s: %w", s, key, err)
		}
	}
	opts := minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    s.cfg.PartSize,
		NumThreads:  s.cfg.Threads,
		// Fill Threads buffers of PartSize from r and upload them in
		// parallel; without it, parts of a plain reader go up one by one.
		ConcurrentStreamParts: s.cfg.Threads > 1 && (size < 0 || uint64(size) > s.cfg.PartSize),
		// Over plain HTTP minio-go would SHA-256 every body to sign it: a
		// second pass over bytes whose SHA-256 megha already has (chunks
		// are named by it and verified on every read). Without it the
		// payload goes unsigned, with a CRC32C trailer where the server
		// supports one; the request itself is still signed.
		DisableContentSha256: true,
	}
	if _, err := s.client.PutObject(ctx, s.cfg.Bucket, s.object(key), src, size, opts); err != nil {
		if rerr := src.failed(); rerr != nil {
			// The reader failed (or was too short or long): say so
			// rather than how the HTTP request broke.
			return fmt.Errorf("%s: put %s: %w", s, key, rerr)
		}
		return s.mapError("put", key, err)
	}
	if rerr := src.failed(); rerr != nil {
		return fmt.Errorf("%s: put %s: %w", s, key, rerr)
	}
	return nil
}

// Get opens the object under key. The object is read as it is consumed;
// reading stops if ctx is cancelled.
func (s *S3Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: get %s: %w", s, key, err)
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, s.object(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.mapError("get", key, err)
	}
	// GetObject is lazy: Stat sends the request, so a missing object is
	// reported here rather than at the first Read.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, s.mapError("get", key, err)
	}
	return obj, nil
}

// Stat describes the object under key.
func (s *S3Store) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return ObjectInfo{}, fmt.Errorf("%s: %w", s, err)
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, fmt.Errorf("%s: stat %s: %w", s, key, err)
	}
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, s.object(key), minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.mapError("stat", key, err)
	}
	return ObjectInfo{Key: key, Size: info.Size, Modified: info.LastModified}, nil
}

// List returns the objects whose keys start with prefix, sorted by key.
func (s *S3Store) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: list %q: %w", s, prefix, err)
	}
	// Cancelling stops the listing goroutine if we return early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	strip := ""
	if s.prefix != "" {
		strip = s.prefix + "/"
	}
	var out []ObjectInfo
	for o := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.object(prefix), Recursive: true}) {
		if o.Err != nil {
			return nil, s.mapError("list", prefix, o.Err)
		}
		key, ok := strings.CutPrefix(o.Key, strip)
		if !ok {
			continue
		}
		out = append(out, ObjectInfo{Key: key, Size: o.Size, Modified: o.LastModified})
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: list %q: %w", s, prefix, err)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Key < out[b].Key })
	return out, nil
}

// Delete removes the object under key; S3 does not mind a missing one.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: delete %s: %w", s, key, err)
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.object(key), minio.RemoveObjectOptions{}); err != nil {
		err = s.mapError("delete", key, err)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// mapError turns an S3 error into one that says what to do. It never
// includes credentials: the S3 error carries only the server's code and
// message, and messages name the environment variables, not their values.
func (s *S3Store) mapError(op, key string, err error) error {
	what := op
	if key != "" {
		what += " " + key
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: %w", s, what, err)
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchKey":
		return fmt.Errorf("%s: %s: %w", s, key, ErrNotFound)
	case resp.Code == "NoSuchBucket":
		return s.noBucket()
	case authCodes[resp.Code], resp.StatusCode == http.StatusForbidden:
		// Other servers may use codes of their own, but answer 403.
		help := credentialsHelp
		if s.ownCreds {
			help = "the credentials were given to the store by its caller"
		}
		return fmt.Errorf("%s: %s: %s (%s): check the credentials: %s", s, what, resp.Code, resp.Message, help)
	case resp.Code != "":
		return fmt.Errorf("%s: %s: %s: %w", s, what, resp.Code, err)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		hint := "check endpoint= in the store URL and that the server is up"
		if strings.Contains(uerr.Error(), "HTTP response to HTTPS client") {
			hint = "the server speaks plain HTTP: add secure=false to the store URL"
		}
		return fmt.Errorf("%s: %s: cannot reach %s: %w: %s", s, what, s.cfg.Endpoint, err, hint)
	}
	return fmt.Errorf("%s: %s: %w", s, what, err)
}

// authCodes are the S3 error codes of refused credentials, and
// versitygw's for an unknown access key (which it sends with a 404).
var authCodes = map[string]bool{
	"AccessDenied": true, "InvalidAccessKeyId": true, "SignatureDoesNotMatch": true,
	"ExpiredToken": true, "InvalidToken": true, "TokenRefreshRequired": true,
	"XAdminUserNotFound": true,
}

func (s *S3Store) noBucket() error {
	return fmt.Errorf("%s: bucket %q does not exist: create it (for example `aws s3 mb s3://%s` or `mc mb ALIAS/%s`) or name another in the store URL",
		s, s.cfg.Bucket, s.cfg.Bucket, s.cfg.Bucket)
}

// exactReader passes through exactly left bytes of r and fails if r holds
// fewer or more (left < 0: no check). It remembers its error, because the
// HTTP client that reads it reports a failed body in its own words (and
// may still be reading it, on its own goroutine, when PutObject returns).
type exactReader struct {
	r    io.Reader
	left int64
	read int64

	mu  sync.Mutex
	err error
}

// failed returns the error the reader met, if any.
func (e *exactReader) failed() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

func (e *exactReader) fail(err error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		e.err = err
	}
	return e.err
}

func (e *exactReader) Read(p []byte) (int, error) {
	if err := e.failed(); err != nil {
		return 0, err
	}
	if e.left < 0 {
		n, err := e.r.Read(p)
		if err != nil && err != io.EOF {
			err = e.fail(err)
		}
		return n, err
	}
	if e.left == 0 {
		if err := e.checkEOF(); err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	e.read += int64(n)
	switch {
	case err == io.EOF && e.left > 0:
		return n, e.fail(fmt.Errorf("read %d bytes, expected %d", e.read, e.read+e.left))
	case err != nil && err != io.EOF:
		return n, e.fail(err)
	}
	if e.left == 0 {
		// The consumer may stop at the declared length without reading
		// on, so make sure there is nothing beyond it before the last
		// bytes go out.
		if err := e.checkEOF(); err != nil {
			return 0, err
		}
		return n, io.EOF
	}
	return n, nil
}

// checkEOF fails unless r is at its end.
func (e *exactReader) checkEOF() error {
	var b [1]byte
	for range 100 {
		n, err := e.r.Read(b[:])
		if n > 0 {
			return e.fail(fmt.Errorf("reader holds more than the %d bytes expected", e.read))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return e.fail(err)
		}
	}
	return e.fail(io.ErrNoProgress)
}
