package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// envRunCLI makes the test binary the netbird command (the root e2e test
// re-executes it as daemons and as the test network in namespaces).
const envRunCLI = "NBFSM_TEST_RUN_NETBIRD"

func TestMain(m *testing.M) {
	if os.Getenv(envRunCLI) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}
