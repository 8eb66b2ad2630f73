// Package testnet starts a complete NetBird test network on 127.0.0.1: a
// management server (mgmtsrv), a signal server (signalsrv) and a STUN/TURN
// server (turnsrv), wired together so that the management server hands out
// the other two in every LoginResponse and SyncResponse:
//
//	signal {uri "127.0.0.1:PORT", protocol HTTP}
//	stuns  [{uri "stun:127.0.0.1:PORT"}]
//	turns  [{hostConfig {uri "turn:127.0.0.1:PORT?transport=udp"}, user, password}]
//
// Integration tests start one per test with Start and reach the fault hooks
// through Network.Mgmt and Network.Signal; `netbird testnet` runs one for
// manual use. Everything listens on 127.0.0.1 only, unless Options.Host
// names another address (end-to-end tests put the servers on a bridge
// inside a network namespace).
//
//	n, err := testnet.Start(testnet.Options{Logger: log})
//	...
//	defer n.Close()
//	// log in with n.ManagementURL() and n.SetupKey()
//	n.Mgmt.Stop()          // clients see Unavailable
//	err = n.Mgmt.Start()   // same port, new server key
package testnet
