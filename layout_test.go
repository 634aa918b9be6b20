package gilmsg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// rootLayers puts each non-test file of the root in a layer, from the
// ground up (doc.go's "Layout" says what each is for). A file may use the
// names declared in its own layer and the layers below, never above: a
// new file gets a line here, and a lower file that needs something of a
// higher one gets it moved down.
var rootLayers = map[string]layer{
	"doc.go":    layerErrors,
	"errors.go": layerErrors,

	"config.go":       layerConfig,
	"config_extra.go": layerConfig,
	"config_load.go":  layerConfig,
	"config_typo.go":  layerConfig,

	"canonical.go":        layerWire,
	"canonical_decode.go": layerWire,
	"canonical_encode.go": layerWire,
	"envelope.go":         layerWire,
	"envelope_signed.go":  layerWire,

	"crl.go":      layerCrypto,
	"trust.go":    layerCrypto,
	"sign.go":     layerCrypto,
	"gpg.go":      layerCrypto,
	"validate.go": layerCrypto,
	"reload.go":   layerCrypto,

	"transport.go":     layerTransport,
	"xpub.go":          layerTransport,
	"zmqio.go":         layerTransport,
	"monitor.go":       layerTransport,
	"netpoll_linux.go": layerTransport,
	"netpoll_other.go": layerTransport,

	"gilmsg.go":         layerBus,
	"hooks.go":          layerBus,
	"stats.go":          layerBus,
	"topic.go":          layerBus,
	"publish.go":        layerBus,
	"publish_batch.go":  layerBus,
	"tail.go":           layerBus,
	"ack.go":            layerBus,
	"ack_queue.go":      layerBus,
	"ack_listener.go":   layerBus,
	"resend.go":         layerBus,
	"store.go":          layerBus,
	"store_open.go":     layerBus,
	"recover.go":        layerBus,
	"recover_rounds.go": layerBus,
	"reconnect.go":      layerBus,
	"checkpoint.go":     layerBus,
	"status.go":         layerBus,

	"relay.go":      layerServices,
	"relay_sign.go": layerServices,
	"consumer.go":   layerServices,
	"hub_status.go": layerServices,
	"default.go":    layerServices,
	"deprecated.go": layerServices,
}

type layer int

const (
	layerErrors layer = iota
	layerConfig
	layerWire
	layerCrypto
	layerTransport
	layerBus
	layerServices
)

func (l layer) String() string {
	return [...]string{"errors", "config", "wire", "crypto", "transport", "bus", "services"}[l]
}

// listedPackage is what go list -json says of a package, in part.
type listedPackage struct {
	ImportPath, Dir, Export           string
	GoFiles, CgoFiles, IgnoredGoFiles []string
	Imports                           []string
}

// goList runs `go list -json args...`: with -deps, every package before
// those that import it.
func goList(t *testing.T, args ...string) []listedPackage {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(gobin, append([]string{"list", "-json"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listedPackage
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list %v named no package", args)
	}
	return pkgs
}

// TestRootHasNoHeavyDeps: the package a fedmsg service imports links no
// database driver, broker client or metrics library, and none of the
// operator programs beside it: those live in their own packages (sqlstore,
// amqpbridge, gateway, ..., cmd/gilmsg), built on the root, so that a
// service pays only for the bus.
func TestRootHasNoHeavyDeps(t *testing.T) {
	pkgs := goList(t, "-deps", ".")
	module := pkgs[len(pkgs)-1].ImportPath
	for _, p := range pkgs[:len(pkgs)-1] {
		for _, heavy := range []string{"jackc/pgx", "mattn/go-sqlite3", "amqp091", "prometheus", "spf13/cobra"} {
			if strings.Contains(p.ImportPath, heavy) {
				t.Errorf("the root package depends on %s", p.ImportPath)
			}
		}
		if rest, ok := strings.CutPrefix(p.ImportPath, module+"/"); ok && !strings.HasPrefix(rest, "internal/") {
			t.Errorf("the root package depends on %s, a package of this module outside internal/", p.ImportPath)
		}
	}
}

// TestRootFileLayers: within the root, no file uses a name declared in a
// file of a higher layer (rootLayers), so that the package reads from the
// ground up. Names are resolved by go/types over the non-test files, so a
// method or a field counts where it is declared.
func TestRootFileLayers(t *testing.T) {
	root := goList(t, ".")[0]
	// Export data of what the root imports, not of the root: that would
	// compile it first.
	imports := slices.DeleteFunc(slices.Clone(root.Imports), func(p string) bool { return p == "C" || p == "unsafe" })
	exports := map[string]string{}
	for _, p := range goList(t, slices.Concat([]string{"-export", "-deps"}, imports)...) {
		exports[p.ImportPath] = p.Export
	}

	all := slices.Concat(root.GoFiles, root.CgoFiles, root.IgnoredGoFiles)
	for _, f := range all {
		if _, ok := rootLayers[f]; !ok && !strings.HasSuffix(f, "_test.go") {
			t.Errorf("%s has no layer: give it one in rootLayers", f)
		}
	}
	for f := range rootLayers {
		if !slices.Contains(all, f) {
			t.Errorf("rootLayers names %s, which is no file of the root package: remove it", f)
		}
	}

	fset := token.NewFileSet()
	var files []*ast.File
	for _, f := range slices.Concat(root.GoFiles, root.CgoFiles) {
		af, err := parser.ParseFile(fset, filepath.Join(root.Dir, f), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, af)
	}
	conf := types.Config{
		Importer: importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
			if exports[path] == "" {
				return nil, fmt.Errorf("go list gave no export data for %s", path)
			}
			return os.Open(exports[path])
		}),
		FakeImportC: true, // the C names of zmqio.go are no root names
	}
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}}
	pkg, err := conf.Check(root.ImportPath, fset, files, info)
	if err != nil {
		t.Fatalf("type-checking the root: %v", err)
	}

	type ref struct{ from, to, name string }
	upward := map[ref]bool{}
	for id, obj := range info.Uses {
		if obj.Pkg() != pkg || !declaredInFile(pkg, obj) {
			continue
		}
		from := filepath.Base(fset.Position(id.Pos()).Filename)
		to := filepath.Base(fset.Position(obj.Pos()).Filename)
		lf, okf := rootLayers[from]
		lt, okt := rootLayers[to]
		if okf && okt && lf < lt { // a file with no layer is reported above
			upward[ref{from, to, qualifiedName(pkg, obj)}] = true
		}
	}
	var lines []string
	for r := range upward {
		lines = append(lines, fmt.Sprintf("%s (%s) uses %s of %s (%s)",
			r.from, rootLayers[r.from], r.name, r.to, rootLayers[r.to]))
	}
	slices.Sort(lines)
	for _, l := range lines {
		t.Error(l)
	}
	if len(lines) > 0 {
		t.Log("a file may use only its own layer and those below: move the name down, or the file up")
	}
}

// declaredInFile reports whether obj is a name a file of the package
// declares for the others: a package-level name, a method or a field (not
// a local, a parameter or a label).
func declaredInFile(pkg *types.Package, obj types.Object) bool {
	switch o := obj.(type) {
	case *types.Func:
		return o.Parent() == pkg.Scope() || o.Signature().Recv() != nil
	case *types.Var:
		return o.IsField() || o.Parent() == pkg.Scope()
	case *types.PkgName, *types.Label:
		return false
	}
	return obj.Parent() == pkg.Scope()
}

func qualifiedName(pkg *types.Package, obj types.Object) string {
	switch o := obj.(type) {
	case *types.Func:
		if recv := o.Signature().Recv(); recv != nil {
			return types.TypeString(recv.Type(), types.RelativeTo(pkg)) + "." + o.Name()
		}
	case *types.Var:
		if o.IsField() {
			return fieldOwner(pkg, o) + "." + o.Name()
		}
	}
	return obj.Name()
}

// fieldOwner names the type whose struct declares field, or "field" for
// the field of an anonymous struct.
func fieldOwner(pkg *types.Package, field *types.Var) string {
	for _, name := range pkg.Scope().Names() {
		tn, ok := pkg.Scope().Lookup(name).(*types.TypeName)
		if !ok {
			continue
		}
		if st, ok := tn.Type().Underlying().(*types.Struct); ok {
			for f := range st.Fields() {
				if f == field {
					return name
				}
			}
		}
	}
	return "field"
}
