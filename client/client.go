// Package client is the Go client of the megha coordinator API. It talks to
// a cluster through any of its members: writes and fresh reads that reach a
// follower are retried on the leader the follower names, and calls that
// find no leader (an election in progress) are retried with backoff until
// the context ends. Submits carry a request ID, so a retried submit never
// creates a second job.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// Wire constants shared with the coordinator: a follower answers a write
// with Unavailable and a google.rpc.ErrorInfo of this reason whose
// metadata[MetaLeader] is the leader's gRPC address.
const (
	ReasonNotLeader = "NOT_LEADER"
	ErrorDomain     = "megha.dev"
	MetaLeader      = "leader"
)

// Config says how to reach a cluster.
type Config struct {
	// Addrs are gRPC addresses of one or more coordinators.
	Addrs []string
	// Token is the bearer token sent with every call.
	Token string
	// TLS enables TLS; TLSCAFile, when set, is the CA bundle that signs the
	// coordinators' certificates (the system pool otherwise).
	TLS       bool
	TLSCAFile string
	// MaxBackoff caps the wait between retries; default 1s.
	MaxBackoff time.Duration
	// AttemptTimeout bounds one attempt of a unary call, so that a node
	// that accepts connections but never answers (a frozen process) is
	// left for another; default 2s. The caller's context bounds the whole
	// call, retries included.
	AttemptTimeout time.Duration
}

// Client is a connection to a coordinator cluster. It is safe for
// concurrent use.
type Client struct {
	cfg   Config
	creds credentials.TransportCredentials

	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	current string
	next    int
}

// New returns a client. It dials lazily: a bad address surfaces on the
// first call.
func New(cfg Config) (*Client, error) {
	var addrs []string
	for _, a := range cfg.Addrs {
		for _, p := range strings.Split(a, ",") {
			if p = strings.TrimSpace(p); p != "" {
				addrs = append(addrs, p)
			}
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("no coordinator address; pass --coordinator HOST:PORT or set MEGHA_COORDINATOR")
	}
	cfg.Addrs = addrs
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = time.Second
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = 2 * time.Second
	}
	c := &Client{cfg: cfg, conns: make(map[string]*grpc.ClientConn), current: addrs[0]}
	c.creds = insecure.NewCredentials()
	if cfg.TLS || cfg.TLSCAFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.TLSCAFile != "" {
			pem, err := os.ReadFile(cfg.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("TLS CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("TLS CA %s: no PEM certificates found", cfg.TLSCAFile)
			}
			tc.RootCAs = pool
		}
		c.creds = credentials.NewTLS(tc)
	}
	return c, nil
}

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	for a, cc := range c.conns {
		if cerr := cc.Close(); err == nil {
			err = cerr
		}
		delete(c.conns, a)
	}
	return err
}

func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(c.creds),
		grpc.WithPerRPCCredentials(bearer{token: c.cfg.Token, secure: c.cfg.TLS || c.cfg.TLSCAFile != ""}),
		// Notice a peer that stopped answering (frozen, partitioned) even
		// on a quiet stream such as Watch.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		return nil, fmt.Errorf("coordinator address %q: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// target returns the address to try now.
func (c *Client) target() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current
}

// redirect makes addr the address to try next.
func (c *Client) redirect(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current = addr
}

// rotate moves to the next configured address after from fails.
func (c *Client) rotate(from string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current != from {
		return // another call already moved on
	}
	c.next = (c.next + 1) % len(c.cfg.Addrs)
	c.current = c.cfg.Addrs[c.next]
}

// call runs a unary fn against the current target, following leader hints
// and retrying retryable failures with backoff until ctx ends. Each attempt
// gets its own deadline (AttemptTimeout); an attempt that runs out of time
// while ctx lives on is retried elsewhere. Retried submits are safe: they
// carry a request ID.
func (c *Client) call(ctx context.Context, fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	return c.retry(ctx, c.cfg.AttemptTimeout, fn)
}

// stream is call for streams, whose attempts last as long as the stream.
func (c *Client) stream(ctx context.Context, fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	return c.retry(ctx, 0, fn)
}

func (c *Client) retry(ctx context.Context, perAttempt time.Duration, fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	backoff := 20 * time.Millisecond
	var last error
	for {
		addr := c.target()
		cc, err := c.conn(addr)
		if err != nil {
			return err
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if perAttempt > 0 {
			actx, cancel = context.WithTimeout(ctx, perAttempt)
		}
		err = fn(actx, cc)
		attemptTimedOut := actx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return nil
		}
		last = err
		leader, retry := classify(err)
		if attemptTimedOut {
			leader, retry = "", true // this node did not answer in time: try another
		}
		if !retry {
			return err
		}
		if leader != "" && leader != addr {
			c.redirect(leader)
			continue // a named leader is worth trying at once
		}
		c.rotate(addr)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
		case <-t.C:
		}
		if backoff *= 2; backoff > c.cfg.MaxBackoff {
			backoff = c.cfg.MaxBackoff
		}
	}
}

// classify says whether err is worth retrying elsewhere, and where.
func classify(err error) (leader string, retry bool) {
	st, ok := status.FromError(err)
	if !ok {
		return "", false
	}
	if st.Code() != codes.Unavailable {
		return "", false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == ReasonNotLeader {
			return info.Metadata[MetaLeader], true
		}
	}
	return "", true
}

// bearer sends the token with every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b.token == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }
