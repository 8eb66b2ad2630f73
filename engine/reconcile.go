package engine

import (
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/mgmt"
)

// Plan is what reconciling a network map into the peer machines does.
type Plan struct {
	Add    []mgmt.RemotePeer
	Remove []wgtypes.Key
	Change []mgmt.RemotePeer // allowed IPs differ
	Same   int               // left alone
}

// Reconcile compares the desired peer set with the current one (key →
// allowed IPs, as the engine last applied it). It is pure and touches no
// machine: an unchanged map of any size yields an empty plan. Adds and
// changes keep the map's order; removals are in key order.
func Reconcile(current map[wgtypes.Key][]netip.Prefix, desired []mgmt.RemotePeer) Plan {
	var p Plan
	seen := make(map[wgtypes.Key]struct{}, len(desired))
	for _, rp := range desired {
		seen[rp.Key] = struct{}{}
		ips, ok := current[rp.Key]
		switch {
		case !ok:
			p.Add = append(p.Add, rp)
		case !slices.Equal(ips, rp.AllowedIPs):
			p.Change = append(p.Change, rp)
		default:
			p.Same++
		}
	}
	for k := range current {
		if _, ok := seen[k]; !ok {
			p.Remove = append(p.Remove, k)
		}
	}
	slices.SortFunc(p.Remove, func(a, b wgtypes.Key) int { return compareKeys(a, b) })
	return p
}

func compareKeys(a, b wgtypes.Key) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Empty reports whether the plan does nothing.
func (p Plan) Empty() bool { return len(p.Add) == 0 && len(p.Remove) == 0 && len(p.Change) == 0 }
