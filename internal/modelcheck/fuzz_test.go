package modelcheck

import (
	"testing"

	"github.com/nbfsm/nbfsm/fsm/fsmtest"
)

// FuzzEngine is the model check with the fuzz input in place of the seeded
// random source: after Start, each op is drawn by Gen from the input's
// bytes (one byte per choice; mostly ops that apply in the state reached, a
// few blind), and every invariant of Check (timer owners, no unhandled
// event, the engine follows signal, no offers while signal is down, the
// peer machines are the map, ...) holds after every step. A failure is
// reported with its sequence shortened by Shrink.
func FuzzEngine(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := New(0)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		in := fsmtest.NewInput(data)
		ops := []Op{{K: Start}}
		m.Apply(ops[0])
		for {
			if err := m.Check(); err != nil {
				t.Fatal(&Failure{Step: len(ops), Err: err, Ops: Shrink(0, ops), Steps: len(ops)})
			}
			if !in.More() || len(ops) > fsmtest.MaxSteps {
				return
			}
			o := m.Gen(in)
			ops = append(ops, o)
			m.Apply(o)
		}
	})
}
