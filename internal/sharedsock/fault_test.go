package sharedsock

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// A fault drops datagrams to and from the addresses it names, and only
// those; removed, the path works again.
func TestFaultDropsPath(t *testing.T) {
	s := listen(t)
	d := openBind(t, s.Bind())
	defer d.stop(t, s.Bind())
	lost, kept := client(t), client(t)
	lostAddr := addrOf(lost)
	s.SetFault(func(a netip.AddrPort) bool { return a == lostAddr })

	// Inbound: the lost address's datagram never reaches WireGuard, the
	// other one's does.
	send(t, lost, s.LocalAddr(), wgPacket(4, 64, 1))
	send(t, kept, s.LocalAddr(), wgPacket(4, 64, 2))
	if r := d.next(t); !bytes.Equal(r.data, wgPacket(4, 64, 2)) {
		t.Fatalf("received %x, want the kept address's datagram", r.data[:8])
	}
	// Outbound: the send "succeeds" and nothing leaves; once the fault is
	// removed the next datagram arrives first.
	ep, err := s.Bind().ParseEndpoint(lostAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Bind().Send([][]byte{wgPacket(4, 64, 3)}, ep); err != nil {
		t.Fatal(err)
	}
	if err := s.Bind().Send([][]byte{wgPacket(4, 64, 4), wgPacket(4, 64, 4)}, ep); err != nil {
		t.Fatal(err)
	}
	s.SetFault(nil)
	if err := s.Bind().Send([][]byte{wgPacket(4, 64, 5)}, ep); err != nil {
		t.Fatal(err)
	}
	_ = lost.SetReadDeadline(time.Now().Add(deadline))
	buf := make([]byte, 2048)
	n, _, err := lost.ReadFromUDPAddrPort(buf)
	if err != nil || !bytes.Equal(buf[:n], wgPacket(4, 64, 5)) {
		t.Fatalf("read %x, %v; want the datagram sent after the fault was removed", buf[:min(n, 8)], err)
	}
	send(t, lost, s.LocalAddr(), wgPacket(4, 64, 6))
	if r := d.next(t); !bytes.Equal(r.data, wgPacket(4, 64, 6)) {
		t.Fatalf("received %x after the fault was removed", r.data[:8])
	}
}
