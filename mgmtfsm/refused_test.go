package mgmtfsm

import (
	"context"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/backoff"
	"github.com/nbfsm/nbfsm/internal/mgmt"
)

// refusingServer knows no peer and refuses every registration with the
// error a real mgmt.Client returns for code (classified by mgmt, not here).
type refusingServer struct {
	err   error
	dials int
}

func (r *refusingServer) FetchKey(w fsm.Sender) func() {
	r.dials++
	go func() { _ = w.Post(EvKey, wgtypes.Key{1}) }()
	return func() {}
}

func (r *refusingServer) Login(w fsm.Sender, _ wgtypes.Key, setupKey string) func() {
	ev := EvNotRegistered
	var err error = mgmt.ErrNotRegistered
	if setupKey != "" {
		err = r.err
		ev = LoginEvent(err)
	}
	go func() { _ = w.Post(ev, err) }()
	return func() {}
}

func (r *refusingServer) Sync(fsm.Sender, wgtypes.Key) func() { panic("sync without login") }
func (r *refusingServer) EndSession()                         {}

// loginError is what mgmt.Client.Login returns when the server answers a
// registration with code.
func loginError(t *testing.T, code codes.Code) error {
	t.Helper()
	err := mgmt.LoginError(status.Error(code, "couldn't add peer: setup key is invalid"), true)
	if LoginEvent(err) != EvKeyRejected {
		t.Fatalf("%v: classified as %v, want %v", code, LoginEvent(err), EvKeyRejected)
	}
	return err
}

// Both refusal codes park the link in needs-login: over ten backoff caps of
// fake time it dials once, and nothing is armed.
func TestRefusedRegistrationStopsDialing(t *testing.T) {
	for _, code := range []codes.Code{codes.NotFound, codes.FailedPrecondition} {
		t.Run(code.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fx := &refusingServer{err: loginError(t, code)}
				l := fsm.NewLoop(fsm.Options{})
				m, err := New(l, &Link{Effects: fx, Rand: rand.New(rand.NewPCG(1, 2)), SetupKey: "used-up"}, nil)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { l.Run(ctx); close(done) }()
				defer func() { cancel(); <-done }()
				_ = l.Post(fsm.Envelope{To: ID, Event: EvStart})
				synctest.Wait()
				time.Sleep(10 * backoff.Links.Cap)
				synctest.Wait()
				var state fsm.State
				var dials, timers int
				_ = l.Do(func() { state, dials, timers = m.State(), m.Data.Dials, m.Timers() })
				if state != NeedsLogin || dials != 1 || fx.dials != 1 || timers != 0 {
					t.Fatalf("state %s, dials %d (effects %d), timers %d; want needs-login, 1, 0", state, dials, fx.dials, timers)
				}
			})
		})
	}
}
