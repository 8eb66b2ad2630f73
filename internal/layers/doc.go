// Package layers holds the test that keeps the import layers of
// docs/architecture.md ("Layers") true: it reads the module's import graph
// with `go list` and fails on an import that goes up or sideways.
package layers
