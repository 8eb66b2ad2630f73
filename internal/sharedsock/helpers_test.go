package sharedsock

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun"
	"golang.zx2c4.com/wireguard/conn"
)

// deadline bounds every wait; it is a failure deadline, never an expectation.
const deadline = 20 * time.Second

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

func listen(t *testing.T) *Socket {
	t.Helper()
	s, err := Listen(loopback, nil)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// client is a plain UDP socket standing in for a remote peer.
func client(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// wgPacket is a well-formed WireGuard header of type typ, size bytes long,
// tagged with id for recognition.
func wgPacket(typ uint32, size int, id byte) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b, typ)
	if size > 4 {
		b[size-1] = id
	}
	return b
}

func stunRequest(t *testing.T, username, pwd string) *stun.Message {
	t.Helper()
	m, err := stun.Build(stun.BindingRequest, stun.TransactionID,
		stun.NewUsername(username),
		stun.NewShortTermIntegrity(pwd),
		stun.Fingerprint)
	if err != nil {
		t.Fatalf("build stun: %v", err)
	}
	return m
}

// received is one datagram wireguard-go would have seen.
type received struct {
	data []byte
	ep   conn.Endpoint
}

// fakeDevice drives the Bind's receive functions like wireguard-go's
// RoutineReceiveIncoming does, forwarding what they return.
type fakeDevice struct {
	got  chan received
	wg   sync.WaitGroup
	errs chan error
}

func openBind(t *testing.T, b conn.Bind) *fakeDevice {
	t.Helper()
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	d := &fakeDevice{got: make(chan received, 64), errs: make(chan error, len(fns))}
	for _, fn := range fns {
		d.wg.Add(1)
		go d.run(fn, b.BatchSize())
	}
	return d
}

func (d *fakeDevice) run(fn conn.ReceiveFunc, batch int) {
	defer d.wg.Done()
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	sizes := make([]int, batch)
	eps := make([]conn.Endpoint, batch)
	for {
		n, err := fn(bufs, sizes, eps)
		if err != nil {
			d.errs <- err
			return
		}
		for i := range n {
			if sizes[i] == 0 {
				continue
			}
			d.got <- received{data: append([]byte(nil), bufs[i][:sizes[i]]...), ep: eps[i]}
		}
	}
}

// stop closes the Bind and checks that every receive function returned
// net.ErrClosed, as wireguard-go requires.
func (d *fakeDevice) stop(t *testing.T, b conn.Bind) {
	t.Helper()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	d.wg.Wait()
	close(d.errs)
	for err := range d.errs {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("receive func returned %v, want net.ErrClosed", err)
		}
	}
}

func (d *fakeDevice) next(t *testing.T) received {
	t.Helper()
	select {
	case r := <-d.got:
		return r
	case <-time.After(deadline):
		t.Fatal("timed out waiting for a WireGuard datagram")
		return received{}
	}
}

// readMux reads one datagram from a pion muxed conn. pion's muxed conns
// ignore read deadlines, so the wait is bounded here: on the deadline the
// conn is closed, which ends the read, and the test fails.
func readMux(t *testing.T, pc net.PacketConn) ([]byte, net.Addr) {
	t.Helper()
	type read struct {
		b    []byte
		from net.Addr
		err  error
	}
	done := make(chan read, 1)
	go func() {
		buf := make([]byte, 1500)
		n, from, err := pc.ReadFrom(buf)
		done <- read{buf[:n], from, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("mux read: %v", r.err)
		}
		return r.b, r.from
	case <-time.After(deadline):
		_ = pc.Close()
		<-done
		t.Fatal("timed out waiting for a datagram on the mux")
		return nil, nil
	}
}

func send(t *testing.T, c *net.UDPConn, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatalf("send: %v", err)
	}
}
