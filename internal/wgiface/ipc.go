package wgiface

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/sharedsock"
)

// ipcConfigurer configures an in-process device through its IPC text
// protocol (the UAPI "set=1"/"get=1" bodies without the framing).
type ipcConfigurer struct {
	dev *device.Device
}

func (c *ipcConfigurer) setPeer(p Peer) error {
	if err := c.dev.IpcSet(peerSetText(p)); err != nil {
		return fmt.Errorf("%w: set peer: %w", ErrDevice, err)
	}
	return nil
}

func (c *ipcConfigurer) removePeer(k wgtypes.Key) error {
	if err := c.dev.IpcSet(fmt.Sprintf("public_key=%x\nremove=true\n", k[:])); err != nil {
		return fmt.Errorf("%w: remove peer: %w", ErrDevice, err)
	}
	return nil
}

func (c *ipcConfigurer) peerStats() (map[wgtypes.Key]PeerStats, error) {
	text, err := c.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("%w: get: %w", ErrDevice, err)
	}
	return parsePeerStats(text)
}

func (c *ipcConfigurer) close() error { return nil }

// peerSetText renders one peer as IPC "set" text. The endpoint line comes
// after the preshared key so that a rejected endpoint leaves allowed IPs and
// the key applied. The text holds the preshared key: never log it.
func peerSetText(p Peer) string {
	var b strings.Builder
	fmt.Fprintf(&b, "public_key=%x\nreplace_allowed_ips=true\n", p.Key[:])
	for _, a := range p.AllowedIPs {
		fmt.Fprintf(&b, "allowed_ip=%s\n", a.Masked())
	}
	if p.PresharedKey != (wgtypes.Key{}) {
		fmt.Fprintf(&b, "preshared_key=%x\n", p.PresharedKey[:])
	}
	if p.Endpoint.IsValid() {
		fmt.Fprintf(&b, "endpoint=%s\n", p.Endpoint)
	}
	fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(p.Keepalive/time.Second))
	return b.String()
}

// parsePeerStats reads the peers out of IPC "get" text.
func parsePeerStats(text string) (map[wgtypes.Key]PeerStats, error) {
	out := make(map[wgtypes.Key]PeerStats)
	var (
		cur     *PeerStats
		curKey  wgtypes.Key
		sec, ns int64
	)
	flush := func() {
		if cur == nil {
			return
		}
		if sec != 0 || ns != 0 {
			cur.LastHandshake = time.Unix(sec, ns)
		}
		out[curKey] = *cur
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		if key == "public_key" {
			flush()
			raw, err := hex.DecodeString(value)
			if err != nil || len(raw) != wgtypes.KeyLen {
				return nil, fmt.Errorf("%w: bad public_key in ipc get", ErrDevice)
			}
			copy(curKey[:], raw)
			cur, sec, ns = &PeerStats{}, 0, 0
			continue
		}
		if cur == nil {
			continue // interface-level line
		}
		var err error
		switch key {
		case "endpoint":
			var ap netip.AddrPort
			if ap, err = netip.ParseAddrPort(value); err == nil {
				cur.Endpoint = ap
				cur.Relayed = sharedsock.RelayPrefix.Contains(ap.Addr())
			}
		case "rx_bytes":
			cur.RxBytes, err = strconv.ParseUint(value, 10, 64)
		case "tx_bytes":
			cur.TxBytes, err = strconv.ParseUint(value, 10, 64)
		case "last_handshake_time_sec":
			sec, err = strconv.ParseInt(value, 10, 64)
		case "last_handshake_time_nsec":
			ns, err = strconv.ParseInt(value, 10, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: bad %s in ipc get: %w", ErrDevice, key, err)
		}
	}
	flush()
	return out, nil
}
