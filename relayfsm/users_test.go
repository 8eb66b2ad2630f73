package relayfsm

import (
	"slices"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
)

// user is a stand-in peer machine that records what the relay tells it.
type user struct{ got []string }

var userSpec = fsm.MustCompile(fsm.Spec[*user]{
	Kind:    "user",
	Initial: "on",
	Events:  []fsm.Event{EvReady, EvLost},
	States:  []fsm.StateDef[*user]{{Name: "on"}},
	Transitions: []fsm.Transition[*user]{
		{From: "on", Event: EvReady, Action: func(m *fsm.Machine[*user], e fsm.Envelope) {
			m.Data.got = append(m.Data.got, "ready "+e.Data.(Ready).Addr)
		}},
		{From: "on", Event: EvLost, Action: func(m *fsm.Machine[*user], e fsm.Envelope) {
			m.Data.got = append(m.Data.got, "lost "+e.Data.(string))
		}},
	},
})

type rig struct {
	t  *testing.T
	l  *fsm.Loop
	fx *fakeEffects
	m  *fsm.Machine[*Link]
	us map[string]*user
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, l: fsm.NewLoop(fsm.Options{}), fx: &fakeEffects{}, us: map[string]*user{}}
	var err error
	r.m, err = New(r.l, &Link{Effects: r.fx}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"p1", "p2"} {
		u := &user{}
		if _, err := fsm.Add(r.l, userSpec, id, u, nil); err != nil {
			t.Fatal(err)
		}
		r.us[id] = u
	}
	t.Cleanup(func() {
		for id := range r.us {
			r.l.Remove(id)
		}
		for _, f := range r.m.Data.Foreign() {
			r.l.Remove(f.ID())
		}
		r.l.Remove(ID)
	})
	return r
}

func (r *rig) do(to string, e fsm.Event, data any) {
	r.l.Deliver(fsm.Envelope{To: to, Event: e, Data: data})
}

func (r *rig) got(id string) []string {
	g := r.us[id].got
	r.us[id].got = nil
	return g
}

func (r *rig) want(id string, want ...string) {
	r.t.Helper()
	if got := r.got(id); !slices.Equal(got, want) {
		r.t.Fatalf("%s told %q, want %q", id, got, want)
	}
}

const home = "rel://a-instance:1"

func TestHomeUsersAreToldOfUpAndDown(t *testing.T) {
	r := newRig(t)
	r.do(ID, EvStart, cfgA)
	r.do(ID, EvAcquire, Use{Peer: "p1"})
	r.want("p1") // not connected yet
	r.do(ID, EvUp, upNil)
	r.want("p1", "ready "+home)
	r.do(ID, EvAcquire, Use{Peer: "p2", Addr: home}) // its own address: home
	r.want("p2", "ready "+home)
	r.do(ID, EvRelease, Use{Peer: "p2", Addr: home})
	r.do(ID, EvSilent, nil)
	r.want("p1", "lost "+home)
	r.want("p2")
	if r.m.Data.Users() != 1 || len(r.m.Data.Foreign()) != 0 {
		t.Fatalf("users %d foreign %d", r.m.Data.Users(), len(r.m.Data.Foreign()))
	}
	r.do(ID, EvRetry, nil)
	r.do(ID, EvUp, upNil)
	r.want("p1", "ready "+home)
}

func TestForeignRelayLifecycle(t *testing.T) {
	r := newRig(t)
	r.do(ID, EvStart, cfgA)
	r.do(ID, EvUp, upNil)
	r.fx.Take()
	const far = "rel://b:2"
	fid := ForeignID(far)

	// First use opens it with the same token.
	r.do(ID, EvAcquire, Use{Peer: "p1", Addr: far})
	if got := r.fx.Take(); !slices.Equal(got, []string{"Connect rel://b:2 100"}) {
		t.Fatalf("effects %q", got)
	}
	f := r.m.Data.foreign[far]
	if f == nil || f.State() != ForeignDialing {
		t.Fatalf("foreign machine %v", f)
	}
	r.do(ID, EvAcquire, Use{Peer: "p2", Addr: far})
	r.do(fid, EvUp, Up{Addr: far})
	r.want("p1", "ready "+far)
	r.want("p2", "ready "+far)
	if f.State() != ForeignUsed || f.Timers() != 1 { // the health deadline
		t.Fatalf("state %s timers %d", f.State(), f.Timers())
	}
	// One leaves: still used; the last leaves: one linger timer more.
	r.do(ID, EvRelease, Use{Peer: "p1", Addr: far})
	if f.State() != ForeignUsed {
		t.Fatalf("state %s", f.State())
	}
	r.do(ID, EvRelease, Use{Peer: "p2", Addr: far})
	if f.State() != ForeignUnused || f.Timers() != 2 {
		t.Fatalf("state %s timers %d", f.State(), f.Timers())
	}
	// Back in use before the timer: the linger timer is gone.
	r.do(ID, EvAcquire, Use{Peer: "p1", Addr: far})
	r.want("p1", "ready "+far)
	if f.State() != ForeignUsed || f.Timers() != 1 {
		t.Fatalf("state %s timers %d", f.State(), f.Timers())
	}
	r.do(ID, EvRelease, Use{Peer: "p1", Addr: far})
	r.do(fid, EvLinger, nil) // the timer fires
	if got := r.fx.Take(); !slices.Equal(got, []string{"Cancel"}) {
		t.Fatalf("effects %q", got)
	}
	if len(r.m.Data.foreign) != 0 || r.l.Len() != 3 { // home + two users
		t.Fatalf("foreign %d, machines %d: not reaped", len(r.m.Data.foreign), r.l.Len())
	}
	r.want("p1") // it had left: not told

	// A dropped foreign relay tells its users and is reaped; the next use
	// re-dials.
	r.do(ID, EvAcquire, Use{Peer: "p1", Addr: far})
	r.do(fid, EvUp, Up{Addr: far})
	r.want("p1", "ready "+far)
	r.do(fid, EvClosed, errBoom)
	r.want("p1", "lost "+far)
	if len(r.m.Data.foreign) != 0 {
		t.Fatal("not reaped")
	}
	r.fx.Take()
	r.do(ID, EvAcquire, Use{Peer: "p1", Addr: far})
	if got := r.fx.Take(); !slices.Equal(got, []string{"Connect rel://b:2 100"}) {
		t.Fatalf("effects %q", got)
	}
	// A failed dial closes it too.
	r.do(fid, EvConnectFailed, errBoom)
	r.want("p1", "lost "+far)
	if s := r.l.Stats(); s.Unhandled != 0 {
		t.Fatalf("unhandled %d", s.Unhandled)
	}
}

func TestStopClosesForeignRelays(t *testing.T) {
	r := newRig(t)
	r.do(ID, EvStart, cfgA)
	r.do(ID, EvUp, upNil)
	r.do(ID, EvAcquire, Use{Peer: "p1", Addr: "rel://b:2"})
	r.do(ForeignID("rel://b:2"), EvUp, Up{Addr: "rel://b:2"})
	r.got("p1")
	r.do(ID, EvStop, nil)
	r.want("p1", "lost rel://b:2") // it used only the foreign one
	if len(r.m.Data.foreign) != 0 {
		t.Fatal("foreign relay survived the stop")
	}
}

// A release goes where the peer's acquire went, whatever address it names:
// the home relay that came back as another instance still lets go of a
// peer that acquired it under its old address (before, that peer held the
// home relay for good: found by the model check), and a peer holds one
// relay at a time.
func TestReleaseFollowsTheAcquire(t *testing.T) {
	const far, moved = "rel://b:2", "rel://a-moved:1"
	for _, tt := range []struct {
		name    string
		steps   func(r *rig)
		users   int // of the home relay
		foreign int // users of the foreign relay
	}{
		{"the home relay came back as another instance", func(r *rig) {
			r.do(ID, EvAcquire, Use{Peer: "p1", Addr: home})
			r.do(ID, EvSilent, nil)
			r.do(ID, EvRetry, nil)
			r.do(ID, EvUp, Up{Addr: moved})
			r.do(ID, EvRelease, Use{Peer: "p1", Addr: home}) // the address it acquired
		}, 0, 0},
		{"the old home address is a foreign relay now", func(r *rig) {
			r.do(ID, EvAcquire, Use{Peer: "p1", Addr: home})
			r.do(ID, EvSilent, nil)
			r.do(ID, EvRetry, nil)
			r.do(ID, EvUp, Up{Addr: moved})
			r.do(ID, EvAcquire, Use{Peer: "p2", Addr: home}) // foreign now
			r.do(ID, EvRelease, Use{Peer: "p1", Addr: home})
		}, 0, 1},
		{"acquiring a foreign relay lets go of the home one", func(r *rig) {
			r.do(ID, EvAcquire, Use{Peer: "p1", Addr: home})
			r.do(ID, EvAcquire, Use{Peer: "p1", Addr: far})
		}, 0, 1},
		{"acquiring the home relay lets go of a foreign one", func(r *rig) {
			r.do(ID, EvAcquire, Use{Peer: "p1", Addr: far})
			r.do(ID, EvAcquire, Use{Peer: "p1", Addr: home})
		}, 1, 0},
		{"a foreign relay's release without its address", func(r *rig) {
			r.do(ID, EvAcquire, Use{Peer: "p1", Addr: far})
			r.do(ID, EvRelease, Use{Peer: "p1"})
		}, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.do(ID, EvStart, cfgA)
			r.do(ID, EvUp, upNil)
			tt.steps(r)
			foreign := 0
			for _, f := range r.m.Data.Foreign() {
				foreign += f.Data.Users()
			}
			if r.m.Data.Users() != tt.users || foreign != tt.foreign {
				t.Fatalf("home users %v, foreign users %d; want %d, %d", r.m.Data.Holders(), foreign, tt.users, tt.foreign)
			}
		})
	}
}
