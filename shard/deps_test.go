package shard

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestImportsStandardLibraryOnly keeps the room pure: shard's own files
// import only the standard library (no megha package, no raft, grpc or
// net); its tests may add rapid.
func TestImportsStandardLibraryOnly(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		test := strings.HasSuffix(name, "_test.go")
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			std := !strings.Contains(strings.Split(path, "/")[0], ".")
			banned := path == "net" || strings.HasPrefix(path, "net/") || path == "os" && !test ||
				path == "math/rand" || strings.HasPrefix(path, "math/rand/") || path == "time" || path == "sync"
			allowed := std && !banned ||
				test && (path == "pgregory.net/rapid" || path == "github.com/megha-ml/megha/shard")
			if !allowed {
				t.Errorf("%s imports %q", name, path)
			}
		}
	}
}
