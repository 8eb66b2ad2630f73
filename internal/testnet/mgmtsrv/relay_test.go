package mgmtsrv

import (
	"slices"
	"testing"
	"time"

	"github.com/nbfsm/nbfsm/internal/relay"
)

// Login and the first Sync carry the relay with a token signed with the
// shared secret; RefreshRelayTokens pushes a config-only message with only
// the relay; a negative TTL signs tokens that are already expired.
func TestRelayTokens(t *testing.T) {
	const secret = "shared"
	urls := []string{"rel://127.0.0.1:1"}
	s := startServer(t, Config{Relay: Relay{URLs: urls, Secret: secret}})
	c := newClient(t, s.Addr())
	lr := c.mustRegister("alice")
	check := func(what, payload, sig string, valid bool) {
		t.Helper()
		tok, err := relay.Token(payload, sig)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		err = relay.Validate(secret, tok, time.Now())
		if (err == nil) != valid {
			t.Fatalf("%s: validate %v, want valid %v", what, err, valid)
		}
	}
	rc := lr.GetNetbirdConfig().GetRelay()
	if !slices.Equal(rc.GetUrls(), urls) {
		t.Fatalf("login relay %v", rc)
	}
	check("login", rc.GetTokenPayload(), rc.GetTokenSignature(), true)

	st := c.sync(meta("alice"))
	first := st.mustRecv()
	rc = first.GetNetbirdConfig().GetRelay()
	check("first sync", rc.GetTokenPayload(), rc.GetTokenSignature(), true)

	s.SetRelay(Relay{URLs: urls, Secret: secret, TTL: -time.Minute})
	s.RefreshRelayTokens()
	upd := st.mustRecv()
	if upd.GetNetworkMap() != nil || upd.GetNetbirdConfig().GetSignal() != nil || len(upd.GetNetbirdConfig().GetTurns()) != 0 {
		t.Fatalf("refresh is not config-only relay: %v", upd)
	}
	rc = upd.GetNetbirdConfig().GetRelay()
	check("refresh (expired)", rc.GetTokenPayload(), rc.GetTokenSignature(), false)
}
