package mgmtfsm_test

import (
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/mgmtfsm"
)

// Every worker of the dialer (a call blocked on a server that never
// answers, the connection's close) is joined by Close once the session is
// cancelled and ended, as the machine does when it leaves a session.
func TestDialerCloseJoinsWorkers(t *testing.T) {
	d := &mgmtfsm.Dialer{URL: "http://127.0.0.1:1", Key: wgtypes.Key{1}}
	l := fsm.NewLoop(fsm.Options{})
	m, err := mgmtfsm.New(l, &mgmtfsm.Link{Effects: d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel := d.FetchKey(m.Worker()) // posts into the (not running) loop's mailbox if it fails first
	cancel()
	d.EndSession()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
