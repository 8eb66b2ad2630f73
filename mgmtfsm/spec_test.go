package mgmtfsm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
	"github.com/nbfsm/nbfsm/internal/mgmt"
)

type fakeEffects struct{ fsmtest.Recorder }

func (f *fakeEffects) FetchKey(w fsm.Sender) func() {
	f.Record("FetchKey")
	return func() { f.Record("Cancel") }
}

func (f *fakeEffects) Login(w fsm.Sender, k wgtypes.Key, setupKey string) func() {
	if setupKey != "" {
		f.Record("Login", "with-setup-key")
	} else {
		f.Record("Login")
	}
	return func() { f.Record("Cancel") }
}

func (f *fakeEffects) Sync(w fsm.Sender, k wgtypes.Key) func() {
	f.Record("Sync")
	return func() { f.Record("Cancel") }
}

func (f *fakeEffects) EndSession() { f.Record("EndSession") }

func TestSpecIsTotal(t *testing.T) { fsmtest.AssertTotal(t, Spec) }

func ev(e fsm.Event, data ...any) fsm.Envelope {
	env := fsm.Envelope{To: ID, Event: e}
	if len(data) > 0 {
		env.Data = data[0]
	}
	return env
}

var (
	errBoom  = errors.New("errBoom")
	srvKey   = wgtypes.Key{1}
	loginRes = &mgmt.LoginResult{Peer: mgmt.PeerConfig{Address: netip.MustParsePrefix("100.64.0.1/10")}}
)

func mapUpdate(serial uint64) mgmt.Update { return mgmt.Update{Map: &mgmt.NetworkMap{Serial: serial}} }

// toOnline is the event sequence of a successful session.
var toOnline = []fsm.Envelope{ev(EvStart), ev(EvKey, srvKey), ev(EvLoginOK, loginRes)}

func seq(parts ...[]fsm.Envelope) []fsm.Envelope {
	var out []fsm.Envelope
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestTransitions(t *testing.T) {
	online := []string{"FetchKey", "Cancel", "Login", "Cancel", "Sync"}
	tests := []struct {
		name     string
		setupKey string
		events   []fsm.Envelope
		want     fsm.State
		effects  []string
		notified []string
		timers   int
	}{
		{name: "idle", want: Idle},
		{name: "start fetches the key", events: []fsm.Envelope{ev(EvStart)}, want: FetchingKey, effects: []string{"FetchKey"}},
		{name: "key → login without setup key", events: []fsm.Envelope{ev(EvStart), ev(EvKey, srvKey)}, want: LoggingIn,
			effects: []string{"FetchKey", "Cancel", "Login"}},
		{name: "login ok → sync", events: toOnline, want: Syncing, effects: online, notified: []string{"mgmt-login"}},
		{name: "first map → synced", events: seq(toOnline, []fsm.Envelope{ev(EvUpdate, mapUpdate(3))}), want: Synced,
			effects: online, notified: []string{"mgmt-login", "network-map 3"}},
		{name: "config-only update stays syncing", events: seq(toOnline, []fsm.Envelope{ev(EvUpdate, mgmt.Update{Config: &mgmt.Config{}})}),
			want: Syncing, effects: online, notified: []string{"mgmt-login", "mgmt-config"}},
		{name: "newer map applied", events: seq(toOnline, []fsm.Envelope{ev(EvUpdate, mapUpdate(3)), ev(EvUpdate, mapUpdate(4))}),
			want: Synced, effects: online, notified: []string{"mgmt-login", "network-map 3", "network-map 4"}},
		{name: "equal serial applied", events: seq(toOnline, []fsm.Envelope{ev(EvUpdate, mapUpdate(3)), ev(EvUpdate, mapUpdate(3))}),
			want: Synced, effects: online, notified: []string{"mgmt-login", "network-map 3", "network-map 3"}},
		{name: "lower serial dropped", events: seq(toOnline, []fsm.Envelope{ev(EvUpdate, mapUpdate(3)), ev(EvUpdate, mapUpdate(2))}),
			want: Synced, effects: online, notified: []string{"mgmt-login", "network-map 3"}},
		{name: "stale first map of a new stream dropped",
			events: seq(toOnline, []fsm.Envelope{ev(EvUpdate, mapUpdate(3)), ev(EvStreamClosed, errBoom), ev(EvRetry), ev(EvKey, srvKey),
				ev(EvLoginOK, loginRes), ev(EvUpdate, mapUpdate(1))}),
			want: Syncing, effects: append(append(slices.Clone(online), "Cancel", "EndSession"), online...),
			notified: []string{"mgmt-login", "network-map 3", "mgmt-login"}},
		{name: "unknown peer with setup key registers", setupKey: "SK", events: []fsm.Envelope{ev(EvStart), ev(EvKey, srvKey), ev(EvNotRegistered, errBoom)},
			want: Registering, effects: []string{"FetchKey", "Cancel", "Login", "Cancel", "Login with-setup-key"}},
		{name: "registration ok", setupKey: "SK", events: []fsm.Envelope{ev(EvStart), ev(EvKey, srvKey), ev(EvNotRegistered, errBoom), ev(EvLoginOK, loginRes)},
			want: Syncing, effects: []string{"FetchKey", "Cancel", "Login", "Cancel", "Login with-setup-key", "Cancel", "Sync"},
			notified: []string{"mgmt-login"}},
		{name: "unknown peer without setup key → needs-login", events: []fsm.Envelope{ev(EvStart), ev(EvKey, srvKey), ev(EvNotRegistered, errBoom)},
			want: NeedsLogin, effects: []string{"FetchKey", "Cancel", "Login", "Cancel", "EndSession"}},
		{name: "rejected setup key → needs-login, no timer", setupKey: "bad",
			events: []fsm.Envelope{ev(EvStart), ev(EvKey, srvKey), ev(EvNotRegistered, errBoom), ev(EvKeyRejected, errBoom)},
			want:   NeedsLogin, effects: []string{"FetchKey", "Cancel", "Login", "Cancel", "Login with-setup-key", "Cancel", "EndSession"}},
		{name: "needs-login ignores retry and network-up", events: []fsm.Envelope{ev(EvStart), ev(EvKey, srvKey), ev(EvKeyRejected, errBoom), ev(EvRetry), ev(EvNetworkUp)},
			want: NeedsLogin, effects: []string{"FetchKey", "Cancel", "Login", "Cancel", "EndSession"}},
		{name: "new setup key leaves needs-login", events: []fsm.Envelope{ev(EvStart), ev(EvKey, srvKey), ev(EvKeyRejected, errBoom), ev(EvSetupKey, "good")},
			want: FetchingKey, effects: []string{"FetchKey", "Cancel", "Login", "Cancel", "EndSession", "FetchKey"}},
		{name: "key fetch fails → backoff", events: []fsm.Envelope{ev(EvStart), ev(EvFailed, errBoom)}, want: Backoff,
			effects: []string{"FetchKey", "Cancel", "EndSession"}, timers: 1},
		{name: "login fails → backoff", events: []fsm.Envelope{ev(EvStart), ev(EvKey, srvKey), ev(EvFailed, errBoom)}, want: Backoff,
			effects: []string{"FetchKey", "Cancel", "Login", "Cancel", "EndSession"}, timers: 1},
		{name: "retry refetches the key", events: []fsm.Envelope{ev(EvStart), ev(EvFailed, errBoom), ev(EvRetry)}, want: FetchingKey,
			effects: []string{"FetchKey", "Cancel", "EndSession", "FetchKey"}},
		{name: "stream dies → backoff", events: seq(toOnline, []fsm.Envelope{ev(EvUpdate, mapUpdate(1)), ev(EvStreamClosed, errBoom)}),
			want: Backoff, effects: append(slices.Clone(online), "Cancel", "EndSession"), notified: []string{"mgmt-login", "network-map 1"}, timers: 1},
		{name: "network-down while connecting → backoff", events: []fsm.Envelope{ev(EvStart), ev(EvNetworkDown)}, want: Backoff,
			effects: []string{"FetchKey", "Cancel", "EndSession"}, timers: 1},
		{name: "network-down while synced: keep the stream", events: seq(toOnline, []fsm.Envelope{ev(EvUpdate, mapUpdate(1)), ev(EvNetworkDown)}),
			want: Synced, effects: online, notified: []string{"mgmt-login", "network-map 1"}},
		{name: "network-up in backoff dials now", events: []fsm.Envelope{ev(EvStart), ev(EvFailed, errBoom), ev(EvNetworkUp)}, want: FetchingKey,
			effects: []string{"FetchKey", "Cancel", "EndSession", "FetchKey"}},
		{name: "network-up while online re-dials", events: seq(toOnline, []fsm.Envelope{ev(EvNetworkUp)}), want: FetchingKey,
			effects: append(slices.Clone(online), "Cancel", "EndSession", "FetchKey"), notified: []string{"mgmt-login"}},
		{name: "stop ends everything", events: seq(toOnline, []fsm.Envelope{ev(EvStop)}), want: Stopped,
			effects: append(slices.Clone(online), "Cancel", "EndSession"), notified: []string{"mgmt-login"}},
		{name: "stop in backoff cancels the timer", events: []fsm.Envelope{ev(EvStart), ev(EvFailed, errBoom), ev(EvStop)}, want: Stopped,
			effects: []string{"FetchKey", "Cancel", "EndSession"}},
		{name: "late login result in backoff ignored", events: []fsm.Envelope{ev(EvStart), ev(EvFailed, errBoom), ev(EvLoginOK, loginRes)},
			want: Backoff, effects: []string{"FetchKey", "Cancel", "EndSession"}, timers: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := &fakeEffects{}
			l := fsm.NewLoop(fsm.Options{})
			var notified []string
			sup := fsm.MustCompile(fsm.Spec[struct{}]{Kind: "sup", Initial: "s", Events: []fsm.Event{NotifyLogin, NotifyMap, NotifyConfig},
				States: []fsm.StateDef[struct{}]{{Name: "s"}},
				Transitions: []fsm.Transition[struct{}]{
					{From: "s", Event: NotifyLogin, Action: func(_ *fsm.Machine[struct{}], e fsm.Envelope) { notified = append(notified, string(e.Event)) }},
					{From: "s", Event: NotifyConfig, Action: func(_ *fsm.Machine[struct{}], e fsm.Envelope) { notified = append(notified, string(e.Event)) }},
					{From: "s", Event: NotifyMap, Action: func(_ *fsm.Machine[struct{}], e fsm.Envelope) {
						notified = append(notified, fmt.Sprintf("%s %d", e.Event, e.Data.(*mgmt.NetworkMap).Serial))
					}},
				}})
			parent, _ := fsm.Add(l, sup, "sup", struct{}{}, nil)
			m, err := New(l, &Link{Effects: fx, SetupKey: tt.setupKey, Rand: rand.New(rand.NewPCG(1, 1))}, parent)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Remove(ID)
			for _, e := range tt.events {
				l.Deliver(e)
			}
			if m.State() != tt.want {
				t.Errorf("state %s, want %s", m.State(), tt.want)
			}
			if got := fx.Take(); !slices.Equal(got, tt.effects) {
				t.Errorf("effects\n got %q\nwant %q", got, tt.effects)
			}
			if !slices.Equal(notified, tt.notified) {
				t.Errorf("notified %q, want %q", notified, tt.notified)
			}
			if m.Timers() != tt.timers {
				t.Errorf("timers %d, want %d", m.Timers(), tt.timers)
			}
			if s := l.Stats(); s.Unhandled != 0 {
				t.Errorf("unhandled events: %d", s.Unhandled)
			}
		})
	}
}

func TestLoginEvent(t *testing.T) {
	tests := []struct {
		err  error
		want fsm.Event
	}{
		{nil, EvLoginOK},
		{fmt.Errorf("x: %w", mgmt.ErrNotRegistered), EvNotRegistered},
		{fmt.Errorf("x: %w", mgmt.ErrSetupKeyRejected), EvKeyRejected},
		{mgmt.ErrUnavailable, EvFailed},
		{mgmt.ErrRequestRejected, EvFailed},
		{errBoom, EvFailed},
	}
	for _, tt := range tests {
		if got := LoginEvent(tt.err); got != tt.want {
			t.Errorf("LoginEvent(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}
