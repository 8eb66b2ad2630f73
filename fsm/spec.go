package fsm

// State names a state of a machine kind. Nested states are written with their
// parent's name as a prefix, by convention "connected.direct", but the
// hierarchy itself comes from StateDef.Parent, never from the name. A parent
// added later to group existing states (the peer's "member", the engine's
// "active") keeps its children's names, so that status and traces that show
// them do not change.
type State string

// Root names the machine itself: the implicit parent of every top-level
// state. What the root declares (Spec.Ignore, internal transitions From Root)
// every state inherits unless it, or a parent on the way up, declares its own
// outcome for the event. Precedence, from the current leaf up to Root: the
// first state that declares an outcome for the event decides; within one
// state its transitions come first (a guarded one falls through to the next
// when its guard fails), then its ignore. So a child's declaration beats its
// parent's, a child may handle what its parent ignores, and ignore what its
// parent handles. One state may not both ignore an event and handle it
// without a guard.
const Root State = "*"

// Event names an event a machine kind understands.
type Event string

// Action runs inside the loop goroutine as part of one transition. It must not
// block: anything that waits runs in a worker started by the action (see
// Machine.Worker) and reports back with events.
type Action[C any] func(m *Machine[C], e Envelope)

// Guard is a pure, named condition evaluated before a transition fires. The
// name is what diagrams show.
type Guard[C any] struct {
	Name string
	Fn   func(m *Machine[C], e Envelope) bool
}

// StateDef declares one state.
type StateDef[C any] struct {
	Name State
	// Parent is the enclosing composite state, "" for a top-level state.
	Parent State
	// Initial is, for a composite state, the child entered when a transition
	// targets the composite itself.
	Initial State
	// Doc is one line for the diagrams' state table.
	Doc string
	// Entry and Exit run when the state is entered or left. Timers armed with
	// After during Entry belong to this state and are cancelled on its exit.
	Entry, Exit Action[C]
	// Ignore lists events this state deliberately drops (counted, no trace).
	// Substates inherit it (see Root for the precedence).
	Ignore []Event
}

// Transition declares what Event does in state From (or in any substate of
// From that does not handle Event itself). From may be Root for an internal
// transition (To "") that every state inherits.
type Transition[C any] struct {
	From  State
	Event Event
	// To is the target; "" declares an internal transition: Action runs, no
	// exit or entry, the state does not change. A target inside From (a
	// substate, or From itself) is external: From is left and entered again.
	To State
	// Reenter must be set when To == From: the transition leaves and
	// re-enters From (exit and entry actions run, its timers are cancelled),
	// whether From is a leaf or a composite. Without it, To == From is a spec
	// error, so that a self-transition never means two things.
	Reenter bool
	Guard   *Guard[C]
	Action  Action[C]
	// Doc is shown in the transition table.
	Doc string
}

// Route is one row of a supervisor's routing table: when a child machine of
// Kind enters (or leaves) a state, the supervisor receives Raise with the
// child's Record as data. Enter matches when the state is newly entered by the
// transition (a move between two substates of connected does not "enter"
// connected).
type Route struct {
	Kind  string
	Enter State
	Leave State
	Raise Event
}

// Spec is the declarative description of a machine kind. The same value
// drives the machines, the diagrams and the totality test. C is the type of the
// machine's own data (Machine.Data), which actions may read and write.
type Spec[C any] struct {
	Kind    string
	Doc     string
	Initial State
	States  []StateDef[C]
	Events  []Event
	// Ignore lists the events the root ignores: every state inherits it
	// unless it declares its own outcome (see Root).
	Ignore      []Event
	Transitions []Transition[C]
	// Routes is the routing table used when this machine supervises others.
	Routes []Route
}

// Join concatenates event lists: specs build their ignore lists from named
// groups (every worker event, say) with it.
func Join(lists ...[]Event) []Event {
	var out []Event
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
