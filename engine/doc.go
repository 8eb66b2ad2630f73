// Package engine is the root supervisor: one machine that routes the link
// machines' and the peers' transitions to each other, paces unparking,
// reconciles the network map into peer machines, and reports status. It
// knows the machines and their effects as interfaces (Config); the real
// workers, the shared socket and the WireGuard interface are assembled
// around it by package client.
package engine
