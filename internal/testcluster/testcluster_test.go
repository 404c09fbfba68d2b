//go:build unix

package testcluster_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/megha-ml/megha/internal/testcluster"
)

func TestHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts coordinator processes")
	}
	c := testcluster.StartT(t, testcluster.Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	if got := len(c.Addrs()); got != 3 {
		t.Fatalf("%d addresses", got)
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldGRPC, oldRaft := leader.GRPCAddr, leader.RaftAddr

	// A stopped follower is no obstacle to finding the leader.
	var follower *testcluster.Node
	for _, n := range c.Nodes {
		if n != leader {
			follower = n
			break
		}
	}
	if err := c.Stop(follower); err != nil {
		t.Fatal(err)
	}
	if !follower.Stopped() || !follower.Running() {
		t.Fatal("stopped follower should be running and stopped")
	}
	if _, err := c.Leader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Cont(follower); err != nil {
		t.Fatal(err)
	}

	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	if leader.Running() {
		t.Fatal("killed leader still running")
	}
	next, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next == leader {
		t.Fatal("dead node is leader")
	}
	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	if leader.GRPCAddr != oldGRPC || leader.RaftAddr != oldRaft {
		t.Fatalf("restart moved ports: %s/%s, was %s/%s", leader.GRPCAddr, leader.RaftAddr, oldGRPC, oldRaft)
	}
	if err := c.WaitCaughtUp(ctx, leader); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitStable(ctx); err != nil {
		t.Fatal(err)
	}
	dir := c.Dir
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if n.Running() {
			t.Fatalf("%s still running after Close", n.ID)
		}
	}
	if os.Getenv("KEEP") == "" {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("cluster dir left behind: %v", err)
		}
	}
}
