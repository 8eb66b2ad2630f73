// Package testnet starts a complete NetBird test network on 127.0.0.1: a
// management server (mgmtsrv), a signal server (signalsrv), a STUN/TURN
// server (turnsrv) and a NetBird relay (relaysrv), wired together so that
// the management server hands out the others in every LoginResponse and
// first SyncResponse:
//
//	signal {uri "127.0.0.1:PORT", protocol HTTP}
//	stuns  [{uri "stun:127.0.0.1:PORT"}]
//	turns  [{hostConfig {uri "turn:127.0.0.1:PORT?transport=udp"}, user, password}]
//	relay  {urls ["rel://127.0.0.1:PORT"], tokenPayload, tokenSignature (RelaySecret)}
//
// Integration tests start one per test with Start and reach the fault hooks
// through Network.Mgmt, Network.Signal and Network.Relay; `netbird testnet` runs one for
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
