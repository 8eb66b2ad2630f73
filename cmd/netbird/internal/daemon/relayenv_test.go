package daemon

import (
	"slices"
	"testing"
)

func TestRelayEnv(t *testing.T) {
	env := map[string]string{"NB_FORCE_RELAY": "true", "NB_HOME_RELAY_SERVERS": " rels://a:443, ,rel://b:80 "}
	g := envReader(func(k string) string { return env[k] })
	if !g.forceRelay() || !slices.Equal(g.homeRelays(), []string{"rels://a:443", "rel://b:80"}) {
		t.Fatalf("force %v relays %q", g.forceRelay(), g.homeRelays())
	}
	none := envReader(func(string) string { return "" })
	if none.forceRelay() || none.homeRelays() != nil {
		t.Fatal("empty environment")
	}
	if envReader(func(string) string { return "yes" }).forceRelay() {
		t.Fatal(`"yes" accepted`)
	}
}
