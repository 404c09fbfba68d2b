package coordinator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/megha-ml/megha/client"
)

// Test tokens: one of each role, two tenants.
const (
	tokAdmin  = "admin-token-0123456789"
	tokAcme   = "acme-token-0123456789"
	tokBeta   = "beta-token-0123456789"
	tokWorker = "worker-token-0123456789"
)

var testTokensFile = fmt.Sprintf(`# test tokens
%s admin
%s tenant acme
%s tenant beta
%s worker
`, tokAdmin, tokAcme, tokBeta, tokWorker)

func testTokens(t testing.TB) *Tokens {
	tok, err := ParseTokens([]byte(testTokensFile))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fastRaft keeps in-process clusters quick to elect.
func fastRaft() RaftConfig {
	rc := DefaultRaftConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 150*time.Millisecond
	return rc
}

// startServer starts a coordinator on OS-chosen ports in a temp dir.
func startServer(t testing.TB, id string, bootstrap bool, mod func(*ServerConfig)) *Server {
	t.Helper()
	cfg := ServerConfig{
		Node: NodeConfig{ID: id, DataDir: filepath.Join(t.TempDir(), id), RaftAddr: "127.0.0.1:0",
			Bootstrap: bootstrap, Raft: fastRaft()},
		GRPCAddr: "127.0.0.1:0", Tokens: testTokens(t), Logger: quietLogger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startCluster starts n in-process nodes on real TCP: the first
// bootstraps, the others join it.
func startCluster(t testing.TB, n int) []*Server {
	t.Helper()
	first := startServer(t, "n1", true, nil)
	waitFor(t, "n1 leads", 10*time.Second, first.Node().IsLeader)
	servers := []*Server{first}
	for i := 2; i <= n; i++ {
		s := startServer(t, fmt.Sprintf("n%d", i), false, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := s.Join(ctx, []string{first.Addr()}, tokAdmin, ""); err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
		servers = append(servers, s)
	}
	// Every node knows every node's gRPC address, so any can redirect.
	waitFor(t, "member table replicated", 10*time.Second, func() bool {
		for _, s := range servers {
			if len(s.Node().FSM().State().Members()) != n {
				return false
			}
		}
		return true
	})
	return servers
}

func newClient(t testing.TB, token string, addrs ...string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Addrs: addrs, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
