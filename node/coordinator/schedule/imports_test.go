package schedule

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The scheduler is pure: it imports the domain types and the standard
// library, nothing that does I/O on its behalf (ledger, p2p, httpapi …).
func TestImportsOnlyDomainAndStdlib(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if path != "github.com/node3/node3" && strings.Contains(first, ".") {
				t.Errorf("%s imports %s: only github.com/node3/node3 and the standard library are allowed", name, path)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no source files found")
	}
}
