// Package fsm is the framework every nbfsm machine stands on: hierarchical
// state machines driven by events, owned by one goroutine, built on
// github.com/looplab/fsm. It knows nothing of NetBird.
//
// A Spec declares a machine kind as data: typed states (with parent states,
// so connected.direct and connected.relayed share the exits of connected),
// events, transitions with optional named guards, entry and exit actions, and
// the events each state ignores. Substates inherit what their parents
// declare, and every state what the machine's Root declares (see Root for
// the precedence). Compile validates it and precomputes, for
// every (leaf state, event), the transitions to try from the leaf up, and the
// flat looplab table that validates every state change (one looplab FSM per
// kind and loop, shared by the kind's machines: a machine holds only the
// index of its leaf, so its cost does not grow with its table). The same value
// renders the diagrams (Mermaid, DOT) and proves the table total (CheckTotal).
//
// The rules of the loop:
//
//   - One owner: every Machine lives in one Loop goroutine. Other goroutines
//     Post events into a bounded mailbox (producers wait when it is full);
//     Do runs a function in the loop, the way to read state from outside.
//   - Run to completion: one event's transition and actions run to the end
//     before the next. Actions Raise events onto a local queue processed
//     before the next mailbox message; nothing re-enters a machine or looplab
//     (looplab callbacks are not used at all, so its re-entrancy deadlock
//     cannot happen).
//   - Actions never block: workers started by actions hold a Sender bound to
//     the machine's generation; events from an older generation are dropped
//     and counted.
//   - Time is an event: Machine.After arms a timer owned by the state being
//     entered; leaving that state cancels it, and a timer cancelled after it
//     fired is dropped before delivery. There is no ticker.
//   - Exits run from the leaf up to the least common ancestor of source and
//     target, then the transition's action, then entries down to the target.
//     A transition to the current leaf is internal (no exit, no entry).
//   - A supervisor is told of every child transition and raises events on
//     itself according to its routing table (Spec.Routes); Broadcast sends an
//     event to every child in a given state.
//   - Every transition is a Record handed to Observers: ZapObserver logs it,
//     Ring keeps the last N and streams them live.
//
// The worked example (package example) is a lamp with a nested on state under
// a panel supervisor; its diagram is docs/diagrams/lamp.md:
//
//	stateDiagram-v2
//	    [*] --> off
//	    state on {
//	        [*] --> on_dim
//	    }
//	    off --> on : switch
//	    on --> off : switch, auto-off, power-lost
//	    on_dim --> on_bright : brighten
//	    on_bright --> on_dim : dim
//	    off --> broken : fail
//	    on --> broken : fail
//	    broken --> off : repair
package fsm
