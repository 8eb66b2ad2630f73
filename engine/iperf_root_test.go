//go:build linux

package engine_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Failure deadlines of the iperf3 benchmark, never expectations, and its
// fixed parameters.
const (
	iperfSeconds    = 10                                // iperf3 -t
	iperfServerWait = 10 * time.Second                  // iperf3 -s listening
	iperfClientWait = (iperfSeconds + 30) * time.Second // iperf3 -c done, JSON written
	iperfTopAfter   = iperfSeconds * time.Second / 2    // the mid-run `top` snapshot
	iperfPort       = "5201"                            // iperf3's default, inside namespace B only
	iperfProfileEnv = "NBFSM_IPERF_PROFILE_DIR"         // optional: clients write cpu-<name>.prof here
	iperfTick       = time.Second / 100                 // USER_HZ, the unit of utime/stime in /proc/<pid>/stat
	iperfTopLines   = 20                                // lines of `top -b -n 1` kept in the log

	iperfDirAB = "a→b" // A sends to B
	iperfDirBA = "b→a" // B sends to A (iperf3 -R)
)

// BenchmarkTUNIperf3 measures TCP throughput through the tunnel with iperf3
// between two nbfsm clients on real wt0 TUN devices, in the topology of
// TestTUNNamespacesEngines (hub namespace with the test network behind a
// bridge, one client per namespace, each a child process of this binary).
// Once both clients have connected and pinged each other, an iperf3 server
// runs in namespace B on B's overlay address and the iperf3 client in
// namespace A, once A→B and once B→A (-R). It reports the receiver's rate
// of each direction and the CPU the two client processes used meanwhile,
// in cores (CPU seconds per wall second, from /proc/<pid>/stat). Root only,
// and needs iperf3 (apt-get install -y iperf3). Run without -race:
//
//	go test -run '^$' -bench TUNIperf3 -benchtime 1x -v ./engine/
//
// With NBFSM_IPERF_PROFILE_DIR set, each client also writes a CPU profile
// of its whole life there (cpu-a.prof, cpu-b.prof) for `go tool pprof`.
func BenchmarkTUNIperf3(b *testing.B) {
	if os.Getenv(e2eEnvRole) != "" {
		b.Skip("in a child process")
	}
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces, TUN)")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed (apt-get install -y iperf3)")
	}
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s not installed (apt-get install -y iproute2 iputils-ping): %v", tool, err)
		}
	}
	profDir := os.Getenv(iperfProfileEnv)
	topo := newE2ETopology(b)

	hub := startE2EChild(b, "hub", topo.hub, map[string]string{e2eEnvRole: e2eRoleTestnet, e2eEnvHost: e2eHubAddr})
	line, ok := hub.mark(e2eMarkTestnet, time.Now().Add(e2eHubWait))
	if !ok {
		b.Fatalf("test network did not start:\n%s", hub.output())
	}
	url, setupKey, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(url, "http://"+e2eHubAddr+":") || setupKey == "" {
		b.Fatalf("hub printed %q, want <management URL on %s> <setup key>", url, e2eHubAddr)
	}

	clients := map[string]*e2eChild{}
	for _, c := range []struct{ name, ns string }{{"a", topo.a}, {"b", topo.b}} {
		prof := ""
		if profDir != "" {
			prof = filepath.Join(profDir, "cpu-"+c.name+".prof")
		}
		clients[c.name] = startE2EChildProfiled(b, c.name, c.ns, prof, map[string]string{
			e2eEnvRole: e2eRoleClient, e2eEnvMgmt: url, e2eEnvSetupKey: setupKey, e2eEnvName: "nbfsm-iperf-" + c.name,
		})
	}
	deadline := time.Now().Add(e2eClientsWait)
	peers := map[string]netip.Addr{} // client name → the overlay address of its peer
	for _, name := range []string{"a", "b"} {
		got, ok := clients[name].mark(e2eMarkPinged, deadline)
		if !ok {
			b.Fatalf("client %s did not connect and ping within %v:\n%s\nhub:\n%s",
				name, e2eClientsWait, clients[name].output(), hub.output())
		}
		peer, err := iperfPeerOf(got)
		if err != nil {
			b.Fatalf("client %s: %v", name, err)
		}
		peers[name] = peer
		b.Logf("client %s: %s", name, got)
	}
	addrB := peers["a"] // A's peer is B

	b.ResetTimer()
	var rate = map[string]float64{}
	var cores = map[string]map[string]float64{iperfDirAB: {}, iperfDirBA: {}}
	for i := 0; i < b.N; i++ {
		for _, dir := range []string{iperfDirAB, iperfDirBA} {
			r, cpu, err := iperfRun(b, topo, addrB, dir == iperfDirBA, clients)
			if err != nil {
				b.Fatalf("iperf3 %s: %v", dir, err)
			}
			rate[dir] += r / float64(b.N)
			for name, c := range cpu {
				cores[dir][name] += c / float64(b.N)
			}
		}
	}
	b.StopTimer()
	for _, dir := range []string{iperfDirAB, iperfDirBA} {
		b.ReportMetric(rate[dir]/1e9, "Gbit/s-"+dir)
		for _, name := range []string{"a", "b"} {
			b.ReportMetric(cores[dir][name], "cores-"+name+"("+dir+")")
		}
	}

	for _, name := range []string{"a", "b"} {
		if err := clients[name].stop(e2eStopWait); err != nil {
			b.Errorf("client %s exited: %v\n%s", name, err, clients[name].output())
		}
	}
	if err := hub.stop(e2eStopWait); err != nil {
		b.Errorf("test network exited: %v\n%s", err, hub.output())
	}
	for _, ns := range []string{topo.a, topo.b} {
		b.Logf("UDP counters in %s: %s", ns, iperfUDPCounters(ns))
	}
	if profDir != "" {
		b.Logf("CPU profiles: go tool pprof -top %s", filepath.Join(profDir, "cpu-a.prof"))
	}
}

// iperfRun runs one iperf3 test through the tunnel: the server in B's
// namespace on B's overlay address, the client in A's; reverse makes B the
// sender. It returns the receiver's bits per second and, per client, the
// CPU cores its process used during the client's run.
func iperfRun(b *testing.B, topo *e2eTopology, addrB netip.Addr, reverse bool,
	clients map[string]*e2eChild) (float64, map[string]float64, error) {
	server := exec.Command("ip", "netns", "exec", topo.b, "iperf3", "-s", "-1", "--forceflush",
		"-B", addrB.String(), "-p", iperfPort)
	out, err := server.StdoutPipe()
	if err != nil {
		return 0, nil, err
	}
	server.Stderr = server.Stdout
	if err := server.Start(); err != nil {
		return 0, nil, fmt.Errorf("start server: %w", err)
	}
	serverOut := make(chan string, 1)
	ready := make(chan struct{})
	go func() { // reads until the one-off server exits
		var all strings.Builder
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if !signalled && strings.Contains(sc.Text(), "Server listening on "+iperfPort) {
				close(ready)
				signalled = true
			}
		}
		if !signalled {
			close(ready)
		}
		serverOut <- all.String()
	}()
	stopServer := func() string {
		_ = server.Process.Kill() // already gone after a complete one-off test
		s := <-serverOut
		_ = server.Wait()
		return s
	}
	timer := time.NewTimer(iperfServerWait)
	select {
	case <-ready:
		timer.Stop()
	case <-timer.C:
		return 0, nil, fmt.Errorf("server not listening within %v:\n%s", iperfServerWait, stopServer())
	}

	args := []string{"netns", "exec", topo.a, "iperf3", "-c", addrB.String(), "-p", iperfPort,
		"-t", strconv.Itoa(iperfSeconds), "-J"}
	if reverse {
		args = append(args, "-R")
	}
	client := exec.Command("ip", args...)
	var stdout, stderr strings.Builder
	client.Stdout, client.Stderr = &stdout, &stderr

	before := map[string]time.Duration{}
	for name, c := range clients {
		if before[name], err = iperfProcCPU(c.cmd.Process.Pid); err != nil {
			stopServer()
			return 0, nil, err
		}
	}
	start := time.Now()
	if err := client.Start(); err != nil {
		stopServer()
		return 0, nil, fmt.Errorf("start client: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- client.Wait() }()
	top := time.NewTimer(iperfTopAfter)
	deadline := time.NewTimer(iperfClientWait)
	defer top.Stop()
	defer deadline.Stop()
	var waitErr error
wait:
	for {
		select {
		case <-top.C:
			b.Logf("top during %s:\n%s", iperfDirName(reverse), iperfTop())
		case waitErr = <-done:
			break wait
		case <-deadline.C:
			_ = client.Process.Kill()
			<-done
			stopServer()
			return 0, nil, fmt.Errorf("client not done within %v", iperfClientWait)
		}
	}
	wall := time.Since(start)
	cpu := map[string]float64{}
	for name, c := range clients {
		after, err := iperfProcCPU(c.cmd.Process.Pid)
		if err != nil {
			stopServer()
			return 0, nil, err
		}
		cpu[name] = (after - before[name]).Seconds() / wall.Seconds()
	}
	srv := stopServer()
	if waitErr != nil {
		return 0, nil, fmt.Errorf("client: %w\n%s%s\nserver:\n%s", waitErr, stdout.String(), stderr.String(), srv)
	}
	bps, retr, err := iperfParse([]byte(stdout.String()))
	if err != nil {
		return 0, nil, err
	}
	b.Logf("iperf3 %s: %.3f Gbit/s received, %d retransmits, client CPU a %.2f b %.2f cores",
		iperfDirName(reverse), bps/1e9, retr, cpu["a"], cpu["b"])
	return bps, cpu, nil
}

func iperfDirName(reverse bool) string {
	if reverse {
		return iperfDirBA
	}
	return iperfDirAB
}

// iperfResult is the part of `iperf3 -J` output the benchmark reads.
type iperfResult struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// iperfParse returns the receiver's rate and the sender's retransmits.
func iperfParse(js []byte) (float64, int, error) {
	var r iperfResult
	if err := json.Unmarshal(js, &r); err != nil {
		return 0, 0, fmt.Errorf("iperf3 JSON: %w\n%s", err, js)
	}
	if r.Error != "" {
		return 0, 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, 0, errors.New("iperf3 JSON: no end.sum_received.bits_per_second")
	}
	return r.End.SumReceived.BitsPerSecond, r.End.SumSent.Retransmits, nil
}

// iperfPeerOf reads the peer's overlay address from a client's marker
// line: "... (peer 100.64.0.2)".
func iperfPeerOf(line string) (netip.Addr, error) {
	_, after, ok := strings.Cut(line, "(peer ")
	if !ok {
		return netip.Addr{}, fmt.Errorf("no peer in %q", line)
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimSpace(after), ")"))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("peer in %q: %w", line, err)
	}
	return a, nil
}

// iperfProcCPU is the user+system CPU time of a process (all its threads),
// from /proc/<pid>/stat fields 14 and 15. `ip netns exec` execs the test
// binary in place, so the child's pid is the client's.
func iperfProcCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(raw[i+1:])) // f[0] is field 3
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * iperfTick, nil
}

// iperfUDPCounters are the namespace's UDP drop counters from
// /proc/net/snmp: receive and send buffer errors mean the tunnel's socket
// dropped datagrams, which TCP inside the tunnel sees as loss.
func iperfUDPCounters(ns string) string {
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").Output()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	var names, values []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "Udp:" {
			if names == nil {
				names = f[1:]
			} else {
				values = f[1:]
			}
		}
	}
	var parts []string
	for i, n := range names {
		if i < len(values) && (n == "InDatagrams" || n == "OutDatagrams" || strings.Contains(n, "Errors")) {
			parts = append(parts, n+"="+values[i])
		}
	}
	return strings.Join(parts, " ")
}

// iperfTop is a `top -b -n 1` snapshot, or why there is none.
func iperfTop() string {
	out, err := exec.Command("top", "-b", "-n", "1", "-w", "200").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(top: %v)", err)
	}
	lines := strings.SplitAfter(string(out), "\n")
	if len(lines) > iperfTopLines {
		lines = lines[:iperfTopLines]
	}
	return strings.Join(lines, "")
}
