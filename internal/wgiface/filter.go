package wgiface

import (
	"golang.zx2c4.com/wireguard/tun"

	"github.com/nbfsm/nbfsm/internal/filter"
)

// filteredDevice puts the access-control filter between wireguard-go and
// the packet device (kernel TUN or netstack):
//
//   - Write carries packets WireGuard decrypted, from the peers toward the
//     host: the inbound filter drops what the policy does not allow, and the
//     rest goes down in one batch, in order (the TUN device's receive
//     coalescing sees the same batch minus the drops).
//   - Read carries packets from the host toward the peers: never dropped,
//     they feed the connection tracker so that replies get in.
//
// Batches and offsets are passed through unchanged; the TUN device's
// segmentation offload has already split its reads into packets when Read
// returns, so the tracker sees every segment.
type filteredDevice struct {
	tun.Device
	f *filter.Filter
}

func newFilteredDevice(dev tun.Device, f *filter.Filter) tun.Device {
	return &filteredDevice{Device: dev, f: f}
}

func (d *filteredDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.Device.Read(bufs, sizes, offset)
	if n > 0 {
		d.f.TrackOutbound(bufs[:n], sizes, offset)
	}
	return n, err
}

// Write filters the batch in place: the slice headers of the packets that
// pass move to the front of bufs (wireguard-go rebuilds bufs for every
// batch and never reads it back). Dropped packets count as written.
func (d *filteredDevice) Write(bufs [][]byte, offset int) (int, error) {
	kept := d.f.FilterInbound(bufs, offset)
	if kept == 0 {
		return len(bufs), nil
	}
	n, err := d.Device.Write(bufs[:kept], offset)
	return n + len(bufs) - kept, err
}
