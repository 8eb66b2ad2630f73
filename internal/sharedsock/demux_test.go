package sharedsock

import (
	"bytes"
	"net"
	"testing"
)

func TestClassify(t *testing.T) {
	stunMsg := stunRequest(t, "abcd:efgh", "pwd").Raw
	tests := []struct {
		name string
		in   []byte
		want Class
	}{
		{"wg initiation", wgPacket(1, 148, 0), ClassWireGuard},
		{"wg response", wgPacket(2, 92, 0), ClassWireGuard},
		{"wg cookie reply", wgPacket(3, 64, 0), ClassWireGuard},
		{"wg transport keepalive", wgPacket(4, 32, 0), ClassWireGuard},
		{"wg transport data", wgPacket(4, 1420, 0), ClassWireGuard},
		{"wg type 4 too short", wgPacket(4, 31, 0), ClassJunk},
		{"wg type 1 too short", wgPacket(1, 8, 0), ClassJunk},
		{"type 0", wgPacket(0, 64, 0), ClassJunk},
		{"type 5", wgPacket(5, 64, 0), ClassJunk},
		{"type 1 with high bytes", append([]byte{1, 0, 0, 1}, make([]byte, 60)...), ClassJunk},
		{"stun binding request", stunMsg, ClassSTUN},
		{"stun header only", stunMsg[:20], ClassSTUN},
		{"stun cut before cookie", stunMsg[:7], ClassJunk},
		{"hole punch", []byte("nb"), ClassPunch},
		{"nb with more", []byte("nbx"), ClassJunk},
		{"NB upper", []byte("NB"), ClassJunk},
		{"empty", nil, ClassJunk},
		{"one byte", []byte{1}, ClassJunk},
		{"junk", bytes.Repeat([]byte{0xff}, 100), ClassJunk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.in); got != tt.want {
				t.Errorf("Classify = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDemuxRoutes sends every datagram class through a real socket, once
// with the Bind open (wireguard-go attached) and once closed (standby
// reader), and checks where each one went.
func TestDemuxRoutes(t *testing.T) {
	for _, open := range []bool{true, false} {
		name := map[bool]string{true: "bind open", false: "bind closed"}[open]
		t.Run(name, func(t *testing.T) {
			s := listen(t)
			c := client(t)
			var dev *fakeDevice
			if open {
				dev = openBind(t, s.Bind())
				defer dev.stop(t, s.Bind())
			}
			muxed, err := s.UDPMux().GetConn("abcd", net.UDPAddrFromAddrPort(s.LocalAddr()))
			if err != nil {
				t.Fatalf("GetConn: %v", err)
			}
			defer muxed.Close()

			inputs := []struct {
				data []byte
				want Class
			}{
				{wgPacket(1, 148, 1), ClassWireGuard},
				{wgPacket(2, 92, 2), ClassWireGuard},
				{wgPacket(3, 64, 3), ClassWireGuard},
				{wgPacket(4, 32, 4), ClassWireGuard},
				{wgPacket(4, 31, 5), ClassJunk},
				{wgPacket(7, 64, 6), ClassJunk},
				{[]byte("nb"), ClassPunch},
				{bytes.Repeat([]byte{0xee}, 40), ClassJunk},
				{stunRequest(t, "abcd:efgh", "pwd").Raw, ClassSTUN},
			}
			for _, in := range inputs {
				send(t, c, s.LocalAddr(), in.data)
			}
			// The STUN datagram was sent last: once the mux has it, every
			// earlier datagram has been classified (loopback keeps order).
			got, from := readMux(t, muxed)
			if !bytes.Equal(got, inputs[len(inputs)-1].data) {
				t.Errorf("mux got %x, want the STUN request", got)
			}
			if from.String() != addrOf(c).String() {
				t.Errorf("mux from = %v, want %v", from, addrOf(c))
			}
			if open {
				for i := range 4 {
					r := dev.next(t)
					if !bytes.Equal(r.data, inputs[i].data) {
						t.Errorf("wireguard got %x, want input %d", r.data[:4], i)
					}
					if r.ep.DstToString() != addrOf(c).String() {
						t.Errorf("endpoint = %s, want %s", r.ep.DstToString(), addrOf(c))
					}
				}
				if lr := s.LastReceive(addrOf(c)); lr.IsZero() {
					t.Error("LastReceive is zero after WireGuard datagrams")
				}
			}
			st := s.Stats()
			wantWG, wantDropped := uint64(4), uint64(3)
			if !open {
				wantWG, wantDropped = 0, 7 // WireGuard is dropped while the device is down
			}
			if st.WireGuardIn != wantWG || st.Dropped != wantDropped || st.STUNIn != 1 || st.Punches != 1 {
				t.Errorf("stats = %+v, want wg=%d dropped=%d stun=1 punches=1", st, wantWG, wantDropped)
			}
			select {
			case r := <-func() chan received {
				if dev == nil {
					return nil
				}
				return dev.got
			}():
				t.Errorf("unexpected extra datagram to wireguard: %x", r.data)
			default:
			}
		})
	}
}
