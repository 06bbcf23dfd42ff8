package sqlite_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsOnlyDomainPackages keeps the store below the domain: it
// implements the stores domain packages declare, with their types and
// sentinels, and never depends on the API, the server or an adapter.
func TestImportsOnlyDomainPackages(t *testing.T) {
	allowed := map[string]bool{
		"github.com/runway-cd/runway/internal/analysis": true,
		"github.com/runway-cd/runway/internal/pipeline": true,
		"github.com/runway-cd/runway/internal/reporter": true,
		"github.com/runway-cd/runway/internal/rollout":  true,
		"github.com/runway-cd/runway/internal/webhook":  true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/runway-cd/runway/") && !allowed[path] {
				t.Errorf("%s imports %s, which is not a domain package whose store this implements", f, path)
			}
		}
	}
}
