//go:build race

package client_test

// raceEnabled: the race detector slows everything 5–10 times.
const raceEnabled = true
