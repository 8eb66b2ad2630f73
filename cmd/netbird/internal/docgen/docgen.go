// Package docgen renders the documentation of every machine kind from the
// Specs the engine runs: docs/diagrams/<kind>.md (Mermaid + tables) and
// docs/diagrams/<kind>.dot. `make docs` writes them; TestDiagramsFresh fails
// when a committed file differs from what the Specs render.
package docgen

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/example"
	"github.com/nbfsm/nbfsm/internal/netmon"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/relayfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// Machines lists every machine kind whose diagrams are published.
func Machines() []fsm.Describer {
	return []fsm.Describer{
		example.LampSpec,
		example.PanelSpec,
		engine.Spec,
		mgmtfsm.Spec,
		signalfsm.Spec,
		peerfsm.Spec,
		netmon.Spec,
		relayfsm.Spec,
		relayfsm.ForeignSpec,
	}
}

// Files returns the rendered files by name (relative to docs/diagrams).
func Files() map[string]string {
	out := map[string]string{}
	for _, d := range Machines() {
		kind := d.Describe().Kind
		out[kind+".md"] = fsm.Markdown(d)
		out[kind+".dot"] = fsm.DOT(d.Describe())
	}
	return out
}

// Write writes every file into dir.
func Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, body := range Files() {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("docgen: %w", err)
		}
	}
	return nil
}
