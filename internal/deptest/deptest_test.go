// Package deptest keeps megha's rooms apart: it fails when a package
// imports what its room must not (see docs/ARCHITECTURE.md).
package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/megha-ml/megha/"

// rule bans import path prefixes for a package: deps anywhere in its
// dependency graph, direct only among its own imports. (The generated API
// package imports grpc, so grpc and net can only be banned as direct
// imports of a pure room.)
type rule struct {
	deps, direct []string
}

var rules = map[string]rule{
	"jobspec": {
		deps:   []string{"github.com/hashicorp/raft", mod + "coordinator", mod + "client"},
		direct: []string{"google.golang.org/grpc", "net", "net/http", "os"},
	},
	"internal/jobstate": {
		deps:   []string{"github.com/hashicorp/raft", mod + "coordinator", mod + "client"},
		direct: []string{"google.golang.org/grpc", "net", "net/http", "os"},
	},
	"client": {
		deps: []string{"github.com/hashicorp/raft", mod + "coordinator", mod + "jobspec"},
	},
	"train": {
		deps:   []string{"github.com/hashicorp/raft", mod + "coordinator", mod + "client", mod + "collective", mod + "api", "google.golang.org/grpc"},
		direct: []string{"net", "net/http"},
	},
	"collective": {
		deps: []string{"github.com/hashicorp/raft", mod + "coordinator", mod + "client", mod + "jobspec", mod + "train"},
	},
	"coordinator/scheduler": {
		deps:   []string{"github.com/hashicorp/raft", mod + "client"},
		direct: []string{"google.golang.org/grpc", "net", "net/http", "os"},
	},
	"lease": {
		deps:   []string{"github.com/hashicorp/raft", mod + "coordinator", mod + "client", mod + "collective", mod + "train", mod + "lease/sim", mod + "lease/grpcmarket"},
		direct: []string{"google.golang.org/grpc", "net", "net/http", "os"},
	},
	"lease/sim": {
		deps: []string{"github.com/hashicorp/raft", mod + "coordinator", mod + "client", mod + "lease/grpcmarket"},
	},
	"lease/grpcmarket": {
		deps: []string{"github.com/hashicorp/raft", mod + "coordinator", mod + "lease/sim"},
	},
	"shard": {
		deps:   []string{mod, "github.com/hashicorp/raft", "google.golang.org/grpc"},
		direct: []string{"net", "net/http", "os"},
	},
	"checkpoint": {
		deps: []string{"github.com/hashicorp/raft", mod + "coordinator", mod + "client", mod + "train", mod + "collective", mod + "lease", mod + "worker"},
	},
	"api/megha/v1": {
		deps: []string{mod, "github.com/hashicorp/raft"},
	},
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// banned reports whether dep is one of prefixes or below one; "net" bans
// net itself but not net/url, which parses strings and does no I/O.
func banned(dep string, prefixes []string) bool {
	for _, b := range prefixes {
		if dep == b || (b != "net" && b != "os" && strings.HasPrefix(dep, strings.TrimSuffix(b, "/")+"/")) {
			return true
		}
	}
	return false
}

func TestRoomsStayApart(t *testing.T) {
	for pkg, r := range rules {
		for _, dep := range goList(t, "-deps", mod+pkg) {
			if dep != mod+pkg && banned(dep, r.deps) {
				t.Errorf("%s depends on %s; its room must not", pkg, dep)
			}
		}
		for _, imp := range goList(t, "-f", `{{join .Imports " "}}`, mod+pkg) {
			if banned(imp, r.direct) {
				t.Errorf("%s imports %s; its room must not", pkg, imp)
			}
		}
	}
}
