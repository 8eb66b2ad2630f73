package engine

import (
	"testing"

	"github.com/nbfsm/nbfsm/fsm/fsmtest"
)

func TestSpecIsTotal(t *testing.T) { fsmtest.AssertTotal(t, Spec) }
