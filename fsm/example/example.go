// Package example is the worked example of the fsm framework: a two-level
// "lamp" machine under a "panel" supervisor. It shows nested states, guards,
// internal transitions, ignores, a timer owned by a composite state, a
// generation-bound worker, and a routing table. Its diagrams are in
// docs/diagrams/lamp.md and docs/diagrams/panel.md.
package example

import (
	"time"

	"github.com/nbfsm/nbfsm/fsm"
)

// Lamp states.
const (
	Off    fsm.State = "off"
	On     fsm.State = "on"
	Dim    fsm.State = "on.dim"
	Bright fsm.State = "on.bright"
	Broken fsm.State = "broken"
)

// Lamp events.
const (
	Switch    fsm.Event = "switch"
	Brighten  fsm.Event = "brighten"
	Dimmer    fsm.Event = "dim"
	Fail      fsm.Event = "fail"
	Repair    fsm.Event = "repair"
	AutoOff   fsm.Event = "auto-off"
	PowerLost fsm.Event = "power-lost"
	Measured  fsm.Event = "measured"
	Reset     fsm.Event = "reset"
)

// AutoOffAfter is how long a lamp stays on before its timer switches it off.
const AutoOffAfter = 10 * time.Minute

// Lamp is a lamp machine's data. Log records entry/exit/action names in order,
// so tests can check ordering.
type Lamp struct {
	Log      []string
	Watts    int
	MaxWatts int
}

func logf(name string) fsm.Action[*Lamp] {
	return func(m *fsm.Machine[*Lamp], _ fsm.Envelope) { m.Data.Log = append(m.Data.Log, name) }
}

var overBudget = &fsm.Guard[*Lamp]{Name: "over-budget", Fn: func(m *fsm.Machine[*Lamp], _ fsm.Envelope) bool {
	return m.Data.MaxWatts > 0 && m.Data.Watts+60 > m.Data.MaxWatts
}}

// LampSpec is the lamp machine kind.
var LampSpec = fsm.MustCompile(fsm.Spec[*Lamp]{
	Kind:    "lamp",
	Doc:     "The worked example of the fsm framework: a lamp with a nested `on` state, a timer owned by `on`, and a guard.",
	Initial: Off,
	Events:  []fsm.Event{Switch, Brighten, Dimmer, Fail, Repair, AutoOff, PowerLost, Measured, Reset},
	States: []fsm.StateDef[*Lamp]{
		{Name: Off, Doc: "dark; no timer", Ignore: []fsm.Event{Brighten, Dimmer, AutoOff, PowerLost, Measured, Reset}},
		{Name: On, Initial: Dim, Doc: "lit; arms the auto-off timer",
			Entry: func(m *fsm.Machine[*Lamp], e fsm.Envelope) {
				m.Data.Log = append(m.Data.Log, "enter on")
				m.After(AutoOffAfter, AutoOff, nil)
			},
			Exit: logf("exit on")},
		{Name: Dim, Parent: On, Entry: logf("enter dim"), Exit: logf("exit dim"), Ignore: []fsm.Event{Dimmer}},
		{Name: Bright, Parent: On, Entry: logf("enter bright"), Exit: logf("exit bright"), Ignore: []fsm.Event{Brighten}},
		{Name: Broken, Doc: "waits for repair", Ignore: []fsm.Event{Switch, Brighten, Dimmer, Fail, AutoOff, PowerLost, Measured, Reset}},
	},
	Transitions: []fsm.Transition[*Lamp]{
		{From: Off, Event: Switch, To: On},
		{From: On, Event: Switch, To: Off},
		{From: On, Event: AutoOff, To: Off, Doc: "timer armed on entry to on"},
		{From: On, Event: PowerLost, To: Off, Doc: "broadcast by the panel"},
		{From: Dim, Event: Brighten, Guard: overBudget, To: "", Action: logf("refuse: over budget"), Doc: "internal: stays dim"},
		{From: Dim, Event: Brighten, To: Bright, Action: logf("action brighten")},
		{From: Bright, Event: Dimmer, To: Dim},
		{From: On, Event: Measured, Action: func(m *fsm.Machine[*Lamp], e fsm.Envelope) {
			if w, ok := e.Data.(int); ok {
				m.Data.Watts = w
			}
		}, Doc: "internal: a worker's measurement"},
		{From: On, Event: Reset, To: On, Reenter: true, Doc: "external: leaves and re-enters on (new timer, back to dim)"},
		{From: Off, Event: Fail, To: Broken},
		{From: On, Event: Fail, To: Broken},
		{From: Off, Event: Repair, Doc: "nothing to repair (internal)"},
		{From: On, Event: Repair, Action: logf("repair while on")},
		{From: Broken, Event: Repair, To: Off},
	},
})

// Panel states and events.
const (
	Powered   fsm.State = "powered"
	Normal    fsm.State = "powered.normal"
	Degraded  fsm.State = "powered.degraded"
	Outage    fsm.State = "outage"
	LampBroke fsm.Event = "lamp-broken"
	LampFixed fsm.Event = "lamp-repaired"
	Cut       fsm.Event = "cut"
	Restore   fsm.Event = "restore"
)

// Panel is the supervisor's data.
type Panel struct{ Broken int }

// PanelSpec supervises lamps: a broken lamp degrades the panel; a power cut
// switches off every lit lamp.
var PanelSpec = fsm.MustCompile(fsm.Spec[*Panel]{
	Kind:    "panel",
	Doc:     "The supervisor of the worked example: routes lamp transitions and broadcasts a power cut.",
	Initial: Powered,
	Events:  []fsm.Event{LampBroke, LampFixed, Cut, Restore},
	States: []fsm.StateDef[*Panel]{
		{Name: Powered, Initial: Normal, Ignore: []fsm.Event{Restore}},
		{Name: Normal, Parent: Powered},
		{Name: Degraded, Parent: Powered, Doc: "at least one lamp is broken"},
		{Name: Outage, Doc: "every lit lamp was told power-lost",
			Entry:  func(m *fsm.Machine[*Panel], e fsm.Envelope) { m.Broadcast("lamp", On, PowerLost, nil) },
			Ignore: []fsm.Event{Cut}},
	},
	Transitions: []fsm.Transition[*Panel]{
		{From: Powered, Event: LampBroke, To: Degraded, Action: func(m *fsm.Machine[*Panel], e fsm.Envelope) { m.Data.Broken++ }},
		{From: Normal, Event: LampFixed, Doc: "internal: nothing was broken"},
		{From: Degraded, Event: LampFixed, Guard: &fsm.Guard[*Panel]{Name: "last-broken", Fn: func(m *fsm.Machine[*Panel], _ fsm.Envelope) bool { return m.Data.Broken == 1 }},
			To: Normal, Action: func(m *fsm.Machine[*Panel], e fsm.Envelope) { m.Data.Broken-- }},
		{From: Degraded, Event: LampFixed, Action: func(m *fsm.Machine[*Panel], e fsm.Envelope) { m.Data.Broken-- }},
		{From: Powered, Event: Cut, To: Outage},
		{From: Outage, Event: Restore, Guard: &fsm.Guard[*Panel]{Name: "lamps-broken", Fn: func(m *fsm.Machine[*Panel], _ fsm.Envelope) bool { return m.Data.Broken > 0 }}, To: Degraded},
		{From: Outage, Event: Restore, To: Powered},
		{From: Outage, Event: LampBroke, Action: func(m *fsm.Machine[*Panel], e fsm.Envelope) { m.Data.Broken++ }},
		{From: Outage, Event: LampFixed, Action: func(m *fsm.Machine[*Panel], e fsm.Envelope) { m.Data.Broken-- }},
	},
	Routes: []fsm.Route{
		{Kind: "lamp", Enter: Broken, Raise: LampBroke},
		{Kind: "lamp", Leave: Broken, Raise: LampFixed},
	},
})
