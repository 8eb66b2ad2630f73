// Package wgiface is the WireGuard interface of a client: userspace
// wireguard-go whose only UDP socket is the shared socket of package
// sharedsock, on one of two packet devices:
//
//   - Netstack: gVisor's userspace TCP/IP stack (no root, no kernel
//     interface). Net() exposes the *netstack.Net for dialing, listening and
//     ping inside the overlay. Peers are configured through the device's IPC
//     (IpcSet/IpcGet text).
//   - TUN: a kernel TUN device (root, Linux) with the overlay address set by
//     ioctl and the link up. The device serves its UAPI socket
//     (/var/run/wireguard/<name>.sock; a stale socket is replaced) and peers
//     are configured through wgctrl, exactly as `wg` would. Only
//     wgctrl.Device(name) is used: wgctrl.Devices() fails as a whole when any
//     stale socket sits in the UAPI directory.
//
// The listen port is the shared socket's; wireguard-go's Down/Up cycles
// re-attach to the same socket.
//
// Peer configuration follows the handshake rule found in the feasibility
// spike: both sides add the peer with key and allowed IPs only; once ICE has
// selected a pair, only the ICE-controlling side sets the endpoint and the
// 25 s keepalive (which starts the handshake at once); the controlled side
// learns the endpoint from the handshake it receives. Setting endpoint and
// keepalive on both sides at once makes the handshakes cross and stalls the
// first packet for wireguard-go's 5 s rekey timeout.
//
// A relayed (TURN) pair is configured like a direct one with the relay
// endpoint's virtual address (sharedsock.RelayPrefix, 240.0.0.0/8) as
// Endpoint: both the IPC text and wgctrl carry it as an ordinary ip:port,
// and the Bind maps it back to the relay. PeerStats reports such endpoints
// with Relayed set.
//
//	sock, _ := sharedsock.Listen(netip.MustParseAddrPort("0.0.0.0:51820"), log)
//	wg, _ := wgiface.New(wgiface.Config{Mode: wgiface.Netstack, Name: "wt0",
//		PrivateKey: key, Address: netip.MustParsePrefix("100.64.0.1/10"), Socket: sock, Logger: log})
//	_ = wg.SetPeer(wgiface.Peer{Key: remote, AllowedIPs: []netip.Prefix{remoteIP}})
//	// after ICE, controlling side only:
//	_ = wg.SetPeer(wgiface.Peer{Key: remote, AllowedIPs: []netip.Prefix{remoteIP},
//		Endpoint: selectedRemote, Keepalive: 25 * time.Second})
//
// Interface.Close removes the device but leaves the shared socket open;
// close the socket after the interface.
package wgiface
