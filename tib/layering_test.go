package tib_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestArchiveWritesNoDisk keeps tib the archive only: no file of it (the tests aside) runs a
// program (filesystem tools belong to restore/write), imports the recovery side, or opens a file
// for writing — except the local backend, whose files are the repository itself.
func TestArchiveWritesNoDisk(t *testing.T) {
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p == "os/exec" || strings.HasPrefix(p, "github.com/cauldron-dr/cauldron/restore") || strings.HasPrefix(p, "github.com/cauldron-dr/cauldron/inoculate") {
				t.Errorf("tib/%s imports %s: the archive runs no tools and knows nothing of the recovery", path, p)
			}
		}
		if filepath.ToSlash(filepath.Dir(path)) == "backend/local" {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "os" {
					switch sel.Sel.Name {
					case "OpenFile", "Create", "WriteFile", "Truncate":
						t.Errorf("tib/%s: os.%s at %s: the archive opens nothing for writing but its own repository files (backend/local)", path, sel.Sel.Name, fset.Position(call.Pos()))
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("only %d files checked: the walk did not find tib's sources", checked)
	}
}
