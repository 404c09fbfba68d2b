package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/megha-ml/megha/client"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// globals are the flags every client command shares.
type globals struct {
	coordinator string
	token       string
	tokenFile   string
	tlsCA       string
	tls         bool
	output      string
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "megha",
		Short: "Train and serve models on GPUs leased from decentralized markets",
		Long: `megha orchestrates training and inference on GPUs rented from decentralized
compute markets: a Raft-replicated coordinator takes jobs, leases GPUs, shards
work across them and keeps training in step with low-communication sync.

Client commands find the coordinator through --coordinator (or
MEGHA_COORDINATOR) and authenticate with --token (or MEGHA_TOKEN).`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.coordinator, "coordinator", envOr("MEGHA_COORDINATOR", "127.0.0.1:7000"),
		"coordinator gRPC address(es), comma-separated [$MEGHA_COORDINATOR]")
	pf.StringVar(&g.token, "token", os.Getenv("MEGHA_TOKEN"), "bearer token [$MEGHA_TOKEN]")
	pf.StringVar(&g.tokenFile, "token-file", os.Getenv("MEGHA_TOKEN_FILE"), "read the bearer token from this file [$MEGHA_TOKEN_FILE]")
	pf.BoolVar(&g.tls, "tls", false, "connect with TLS (implied by --tls-ca)")
	pf.StringVar(&g.tlsCA, "tls-ca", os.Getenv("MEGHA_TLS_CA"), "CA certificate that signs the coordinator's TLS certificate [$MEGHA_TLS_CA]")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")

	root.AddCommand(
		newCoordinatorCmd(),
		newSubmitCmd(g),
		newJobsCmd(g),
		newStatusCmd(g),
		newCancelCmd(g),
		newClusterCmd(g),
		newWorkerCmd(g),
		newWorkersCmd(g),
		newLeasesCmd(g),
		newCheckpointsCmd(g),
		newExportCmd(g),
		newLogsCmd(g),
		newMarketCmd(g),
		newReportCmd(g),
	)
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// client builds an API client from the global flags.
func (g *globals) client() (*client.Client, error) {
	if g.output != "table" && g.output != "json" {
		return nil, fmt.Errorf("--output %q: use table or json", g.output)
	}
	tok := g.token
	if tok == "" && g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return nil, fmt.Errorf("no token: pass --token or set MEGHA_TOKEN (a coordinator started without --tokens wrote an admin token to DATA_DIR/admin.token)")
	}
	return client.New(client.Config{
		Addrs: []string{g.coordinator}, Token: tok, TLS: g.tls, TLSCAFile: g.tlsCA,
	})
}

// tokenValue is --token, or the contents of --token-file, or "".
func (g *globals) tokenValue() string {
	if g.token != "" || g.tokenFile == "" {
		return g.token
	}
	b, err := os.ReadFile(g.tokenFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// dial connects to the coordinator and bounds the call with timeout;
// done closes both.
func (g *globals) dial(cmd *cobra.Command, timeout time.Duration) (*client.Client, context.Context, func(), error) {
	c, err := g.client()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	return c, ctx, func() { cancel(); c.Close() }, nil
}

// hintFor says what to do about common API errors.
func hintFor(st *status.Status) string {
	switch st.Code() {
	case codes.Unauthenticated:
		return "hint: check --token / MEGHA_TOKEN against the coordinator's tokens file"
	case codes.PermissionDenied:
		return "hint: this needs a token with a different role (admin, tenant or worker)"
	case codes.Unavailable:
		return "hint: is a coordinator running at --coordinator / MEGHA_COORDINATOR? start one with `megha coordinator`"
	case codes.DeadlineExceeded:
		return "hint: the cluster may have no leader; check `megha cluster members`"
	case codes.NotFound:
		return "hint: `megha jobs` lists the jobs you can see"
	}
	return ""
}
