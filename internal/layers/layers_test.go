package layers

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/nbfsm/nbfsm/"

// graph is each module package's production imports (tests' excluded),
// module paths without the module prefix.
func graph(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	g := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		g[pkg] = nil
		for _, imp := range f[1:] {
			g[pkg] = append(g[pkg], strings.TrimPrefix(imp, mod))
		}
	}
	return g
}

var (
	machines = []string{"peerfsm", "signalfsm", "mgmtfsm", "relayfsm", "internal/netmon"}
	// programs are the binary and the bodies of its commands
	// (cmd/netbird/internal/...: the daemon, the demo, the scenario runner
	// and soak, the diagram generator); harnesses check the machines
	// composed. Neither is imported from below.
	programs  = []string{"cmd"}
	harnesses = []string{"internal/modelcheck"}
	// above the machines: what connects them, and what runs them.
	connectors = []string{"engine", "client"}
)

func under(pkg string, set []string) bool {
	return slices.ContainsFunc(set, func(s string) bool { return pkg == s || strings.HasPrefix(pkg, s+"/") })
}

func TestLayers(t *testing.T) {
	g := graph(t)
	if len(g) < 20 || g["engine"] == nil {
		t.Fatalf("go list gave %d packages (engine imports %v): not the module's graph", len(g), g["engine"])
	}
	upper := slices.Concat(machines, programs, harnesses, connectors)
	rules := []struct {
		name string
		pkgs func(string) bool
		bad  func(from, imp string) bool
	}{
		{"a machine package imports no other machine, nor what runs machines",
			func(p string) bool { return under(p, machines) },
			func(from, imp string) bool { return imp != from && under(imp, upper) }},
		{"the engine imports neither the client nor a program, nor the data path (ICE, netstack, the socket, WireGuard)",
			func(p string) bool { return p == "engine" },
			func(_, imp string) bool {
				return under(imp, slices.Concat(programs, harnesses, []string{"client", "internal/sharedsock", "internal/wgiface"})) ||
					strings.HasPrefix(imp, "github.com/pion/") || strings.HasPrefix(imp, "gvisor.dev/") ||
					strings.HasPrefix(imp, "golang.zx2c4.com/wireguard/") && imp != "golang.zx2c4.com/wireguard/wgctrl/wgtypes"
			}},
		{"the client imports no program",
			func(p string) bool { return p == "client" },
			func(_, imp string) bool { return under(imp, slices.Concat(programs, harnesses)) }},
		{"the framework knows nothing of NetBird",
			func(p string) bool { return under(p, []string{"fsm"}) },
			func(_, imp string) bool {
				return isModule(g, imp) && !under(imp, []string{"fsm"}) && imp != "internal/backoff"
			}},
		{"a wire, crypto or data-path package imports no machine, engine, client or program",
			func(p string) bool {
				return strings.HasPrefix(p, "internal/") && !under(p, slices.Concat(machines, harnesses))
			},
			func(_, imp string) bool { return under(imp, upper) }},
		{"only programs import programs",
			func(p string) bool { return !under(p, programs) },
			func(_, imp string) bool { return under(imp, programs) }},
	}
	for _, r := range rules {
		for pkg, imps := range g {
			if !r.pkgs(pkg) {
				continue
			}
			for _, imp := range imps {
				if isModule(g, imp) || strings.Contains(imp, ".") {
					if r.bad(pkg, imp) {
						t.Errorf("%s: %s imports %s", r.name, pkg, imp)
					}
				}
			}
		}
	}
}

func isModule(g map[string][]string, imp string) bool {
	_, ok := g[imp]
	return ok
}
