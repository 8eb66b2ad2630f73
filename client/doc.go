// Package client assembles one complete nbfsm client: the engine with its
// real workers (signal, management and relay dialers, pion ICE agents on
// the shared socket), the shared UDP socket, the WireGuard interface
// (netstack or TUN) and the packet filter. Programs (the daemon, the demo,
// the scenario runner, the soak) run clients; the engine does not know
// this package.
package client
