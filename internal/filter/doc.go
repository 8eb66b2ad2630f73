// Package filter is nbfsm's access control on the WireGuard data path: a
// stateless rule matcher for the network's policies (NetBird FirewallRules,
// shared/protocol/FIREWALL.md) in front of a small connection tracker.
//
// The filter sits between wireguard-go and the packet device (TUN or
// netstack; see wgiface's filtering device):
//
//   - Inbound packets (decrypted by WireGuard, on their way to the host) are
//     checked: a packet that belongs to a tracked flow passes; otherwise the
//     rules decide, DROP rules first (exact peer, then any peer), then ACCEPT
//     rules (exact peer, then any peer); nothing matched means drop. ICMP
//     errors (v4 destination-unreachable and time-exceeded; v6 destination-
//     unreachable, packet-too-big, time-exceeded, parameter-problem) always
//     pass, as in the official client, or path MTU discovery breaks.
//   - Outbound packets (from the host toward the peers) are never dropped:
//     they create or refresh tracked flows (TCP and UDP by 5-tuple, ICMP echo
//     by identifier), so that replies to what this peer started pass
//     whatever the rules say. OUT rules are ignored, as in the official
//     client when it tracks connections.
//
// Modes ([Mode]): Off passes everything and tracks nothing (the user's
// DisableFirewall); AllowAll passes every inbound packet but still tracks
// outbound flows (a legacy management server that sends neither rules nor
// firewallRulesIsEmpty), so that flows started meanwhile survive a later
// switch to Enforce; Enforce applies the rules (none = deny every new inbound
// flow; BlockInbound is Enforce without rules).
//
// A new policy replaces the compiled rule set with one atomic pointer swap;
// the flow tables are kept, so established flows keep working. Inbound flows
// the rules accepted are tracked as well (a TCP SYN, the first UDP datagram),
// like a kernel firewall's "established" state: they survive a new map that
// no longer allows them until they end or expire.
//
// Time: every flow carries its deadline (the official timeouts: TCP
// established 3 h, opening and closing 60 s, LAST_ACK 30 s, TIME_WAIT 4 min;
// UDP 30 s idle; ICMP echo 30 s). Nothing ticks: a lookup that finds an
// expired flow deletes it, and an insert into a full table evicts an expired
// flow or the one closest to expiry among a bounded sample. Tables are
// bounded (TCP 65 536, UDP 16 384, ICMP 2 048, fragments 1 024).
//
// Fragments: the first fragment is judged by its transport header; later
// fragments of the same datagram (source, destination, protocol,
// identification) pass if the first one passed within 30 s, and are dropped
// otherwise. IPv6 extension headers other than Fragment are dropped.
//
// Deviation from the official userspace filter: DROP rules for "any peer"
// (0.0.0.0 or ::) are honoured; upstream consults only exact-peer DROP rules.
// Current management never sends wildcard rules for ordinary policies.
//
// The per-packet path allocates nothing: the rule set is read through an
// atomic pointer, the packet is parsed into a stack value, and flow tables
// are maps with fixed-size keys and values (a table only allocates when it
// grows, up to its bound).
package filter
