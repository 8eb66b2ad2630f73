package sharedsock

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/pion/stun"
	"go.uber.org/zap"
)

// registration is one selected direct pair whose ICE agent is closed.
type registration struct {
	pwd    string
	remote netip.AddrPort
}

// responder answers the STUN Binding requests a remote ICE agent keeps
// sending on a selected pair (every 4 s for official peers, which drop the
// path after ~6 s without answers) once the local agent is closed. It
// answers exactly as pion's agent does: Binding Success with
// XOR-MAPPED-ADDRESS of the source, MESSAGE-INTEGRITY keyed with the local
// password, FINGERPRINT, and the request's transaction ID.
type responder struct {
	mu      sync.RWMutex
	byUfrag map[string]*registration
}

func newResponder() *responder {
	return &responder{byUfrag: make(map[string]*registration)}
}

// Respond makes the socket answer Binding requests addressed to localUfrag
// (USERNAME "localUfrag:remoteUfrag") and authenticated with localPwd, in
// place of a closed ICE agent. Register only after the agent for localUfrag
// is closed: registered ufrags are answered here and never reach the mux.
//
// remote is the selected remote candidate. Requests from another source are
// answered too when they authenticate (the remote's NAT may have rebound; a
// pion agent answers them as well) and logged. cancel removes this
// registration (not a newer one for the same ufrag); it is idempotent.
func (s *Socket) Respond(localUfrag, localPwd string, remote netip.AddrPort) (cancel func(), err error) {
	if localUfrag == "" || localPwd == "" || strings.Contains(localUfrag, ":") {
		return nil, ErrBadCredentials
	}
	reg := &registration{pwd: localPwd, remote: canonical(remote)}
	r := s.resp
	r.mu.Lock()
	r.byUfrag[localUfrag] = reg
	r.mu.Unlock()
	s.log.Debug("responding", zap.Stringer("endpoint", remote))
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			if r.byUfrag[localUfrag] == reg {
				delete(r.byUfrag, localUfrag)
			}
			r.mu.Unlock()
		})
	}, nil
}

// handle answers b if it is a Binding request for a registered ufrag and
// reports whether b was consumed (answered or rejected). Anything else is
// left for the mux.
func (r *responder) handle(s *Socket, b []byte, from netip.AddrPort) bool {
	r.mu.RLock()
	empty := len(r.byUfrag) == 0
	r.mu.RUnlock()
	if empty {
		return false
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
		return false
	}
	var user stun.Username
	if err := user.GetFrom(m); err != nil {
		return false
	}
	ufrag, _, _ := strings.Cut(user.String(), ":")
	r.mu.RLock()
	reg := r.byUfrag[ufrag]
	r.mu.RUnlock()
	if reg == nil {
		return false
	}
	out, err := reply(m, reg.pwd, from)
	if err != nil {
		s.stats.dropped.Add(1)
		s.log.Debug("stun request rejected", zap.Stringer("from", from), zap.Error(err))
		return true
	}
	if from != reg.remote {
		s.log.Debug("stun request from a new address", zap.Stringer("from", from),
			zap.Stringer("endpoint", reg.remote))
	}
	if err := s.writeTo(out, from); err != nil {
		s.log.Debug("stun reply failed", zap.Stringer("to", from), zap.Error(err))
		return true
	}
	s.stats.responded.Add(1)
	return true
}

// reply checks a Binding request against pwd and builds pion's answer.
func reply(req *stun.Message, pwd string, from netip.AddrPort) ([]byte, error) {
	// Our checks, not pion's: official peers put an attribute after
	// FINGERPRINT, which stun.Fingerprint.Check rejects (stuncheck.go).
	if err := CheckRequest(req.Raw, pwd); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	out, err := stun.Build(req, stun.BindingSuccess,
		&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
		stun.NewShortTermIntegrity(pwd),
		stun.Fingerprint,
	)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	return out.Raw, nil
}
