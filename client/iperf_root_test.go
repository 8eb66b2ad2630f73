//go:build linux

package client_test

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
	iperfSeconds      = 10                        // iperf3 -t of the benchmark
	iperfShortSeconds = 2                         // iperf3 -t of the smoke test
	iperfServerWait   = 10 * time.Second          // iperf3 -s listening, exited after the test
	iperfClientSlack  = 30 * time.Second          // iperf3 -c done past -t, JSON written
	iperfPort         = "5201"                    // iperf3's default, inside namespace B only
	iperfProfileEnv   = "NBFSM_IPERF_PROFILE_DIR" // optional: clients write cpu-<name>-<firewall>.prof here
	iperfTick         = time.Second / 100         // USER_HZ, the unit of utime/stime in /proc/<pid>/stat
	iperfTopLines     = 20                        // lines of `top -b -n 1` kept in the log

	iperfDirAB = "a→b" // A sends to B
	iperfDirBA = "b→a" // B sends to A (iperf3 -R)
)

// BenchmarkTUNIperf3 measures TCP throughput with iperf3 between two
// network namespaces, first on the bare path (the veth pairs and the hub's
// bridge, underlay addresses) and then through the tunnel between two
// nbfsm clients on real wt0 TUN devices, in the topology of
// TestTUNNamespacesEngines (hub namespace with the test network behind a
// bridge, one client per namespace, each a child process of this binary).
// Each path carries one TCP stream for iperfSeconds, once A→B and once B→A
// (-R); the tunnel runs once both clients have connected and pinged each
// other. It reports the receiver's rate of each direction, the tunnel's
// share of the bare rate, and the CPU per gigabit of each path (see
// iperfSample for exactly what is counted). Root only, and needs iperf3
// (apt-get install -y iperf3). Run without -race (`make iperf`):
//
//	go test -run '^$' -bench TUNIperf3 -benchtime 1x -v ./client/
//
// With NBFSM_IPERF_PROFILE_DIR set, each client also writes a CPU profile
// of its whole life there (cpu-a-firewall-off.prof, cpu-b-firewall-off.prof,
// and the same for firewall-on) for `go tool pprof`.
//
// It runs twice in one invocation, firewall-off (DisableFirewall: no filter
// on the interface) and firewall-on (both clients enforce a policy that
// allows ICMP and TCP/5201 from the other peer: every data segment and
// every ACK goes through the filter and its flow table).
func BenchmarkTUNIperf3(b *testing.B) {
	for _, fw := range []bool{false, true} {
		name := "firewall-off"
		if fw {
			name = "firewall-on"
		}
		b.Run(name, func(b *testing.B) {
			var sum map[string]iperfPair
			for i := 0; i < b.N; i++ {
				sum = runTUNIperf3(b, fw, iperfSeconds, os.Getenv(iperfProfileEnv))
			}
			for _, dir := range []string{iperfDirAB, iperfDirBA} {
				p := sum[dir]
				b.ReportMetric(p.bare.bps/1e9, "Gbit/s-bare-"+dir)
				b.ReportMetric(p.tunnel.bps/1e9, "Gbit/s-tunnel-"+dir)
				b.ReportMetric(p.ratio(), "tunnel/bare-"+dir)
				b.ReportMetric(p.bare.cpuPerGbit(), "CPU-s/Gbit-bare-"+dir)
				b.ReportMetric(p.tunnel.cpuPerGbit(), "CPU-s/Gbit-tunnel-"+dir)
			}
		})
	}
}

// TestTUNIperf3Short is a smoke test of the benchmark: the bare path and
// the tunnel each carry a 2-second iperf3 stream both ways. It checks only
// that every run completes with data received (throughput is measured by
// BenchmarkTUNIperf3, not asserted).
func TestTUNIperf3Short(t *testing.T) {
	if os.Getenv(e2eEnvRole) != "" {
		t.Skip("in a child process")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	runTUNIperf3(t, false, iperfShortSeconds, "")
}

// iperfPair is one direction measured on both paths.
type iperfPair struct{ bare, tunnel iperfSample }

// ratio is the tunnel's share of the bare path's rate.
func (p iperfPair) ratio() float64 { return p.tunnel.bps / p.bare.bps }

// iperfSample is one iperf3 run. cpu is the user+system CPU time, over the
// run, of the processes that carried it: the iperf3 client and server (from
// their rusage once they have exited; `ip netns exec` execs iperf3 in
// place) and, through the tunnel, the two nbfsm client processes (all
// their threads, the difference of /proc/<pid>/stat utime+stime across the
// run). System time includes the kernel's network work done in those
// processes' context (the veth/bridge/TUN softirqs run mostly on the
// sending syscall's return); work done in ksoftirqd or other kernel
// threads is not counted.
//
// machine is the busy time of all the machine's CPUs over the run (from
// /proc/stat: everything but idle and iowait), softirq the part of it in
// softirq context: the machine is shared, and machine minus the counted
// processes is the load of everything else (other processes, kernel
// threads) while the path was measured.
type iperfSample struct {
	bps     float64 // receiver's rate
	retr    int     // sender's TCP retransmits
	wall    time.Duration
	cpu     map[string]time.Duration // process → CPU time during the run
	machine time.Duration            // all CPUs, busy
	softirq time.Duration            // all CPUs, in softirq
	// switches are the context switches (voluntary and not) of the
	// processes in pids over the run, all their threads: hand-offs
	// between the data path's goroutines that park a thread show here.
	switches int64
}

// cpuTotal is the CPU time of every counted process.
func (s iperfSample) cpuTotal() time.Duration {
	var t time.Duration
	for _, c := range s.cpu {
		t += c
	}
	return t
}

// cores is the counted CPU time per wall second.
func (s iperfSample) cores() float64 { return s.cpuTotal().Seconds() / s.wall.Seconds() }

// machineCores is the whole machine's busy CPU time per wall second.
func (s iperfSample) machineCores() float64 { return s.machine.Seconds() / s.wall.Seconds() }

// cpuPerGbit is the counted CPU seconds per gigabit received.
func (s iperfSample) cpuPerGbit() float64 { return s.cores() / (s.bps / 1e9) }

func (s iperfSample) String() string {
	parts := []string{}
	for _, name := range []string{"iperf3-client", "iperf3-server", "nbfsm-a", "nbfsm-b"} {
		if c, ok := s.cpu[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", name, c.Seconds()/s.wall.Seconds()))
		}
	}
	w := s.wall.Seconds()
	sw := ""
	if s.switches > 0 {
		sw = fmt.Sprintf("; clients' context switches %.0f per Gbit", float64(s.switches)/(s.bps/1e9*w))
	}
	return fmt.Sprintf("%.3f Gbit/s, %d retransmits, %.2f cores (%s), %.3f CPU-s/Gbit; machine %.2f cores busy (softirq %.2f, not counted %.2f)%s",
		s.bps/1e9, s.retr, s.cores(), strings.Join(parts, ", "), s.cpuPerGbit(),
		s.machine.Seconds()/w, s.softirq.Seconds()/w, (s.machine-s.cpuTotal()).Seconds()/w, sw)
}

// runTUNIperf3 builds the topology, measures the bare path, starts the
// test network and the two clients, measures the tunnel and returns both
// per direction. profDir, if not empty, gets the clients' CPU profiles.
func runTUNIperf3(tb testing.TB, firewall bool, seconds int, profDir string) map[string]iperfPair {
	if os.Getenv(e2eEnvRole) != "" {
		tb.Skip("in a child process")
	}
	if os.Geteuid() != 0 {
		tb.Skip("needs root (network namespaces, TUN)")
	}
	for _, tool := range []string{"ip", "ping", "iperf3"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("%s not installed (apt-get install -y iproute2 iputils-ping iperf3): %v", tool, err)
		}
	}
	topo := newE2ETopology(tb)
	addrA, addrB := netip.MustParseAddr(e2eAddrA), netip.MustParseAddr(e2eAddrB)
	res := map[string]iperfPair{}
	for _, dir := range []string{iperfDirAB, iperfDirBA} {
		s, err := iperfRun(tb, topo, addrB, seconds, dir == iperfDirBA, nil)
		if err != nil {
			tb.Fatalf("iperf3 bare %s (%v → %v): %v", dir, addrA, addrB, err)
		}
		res[dir] = iperfPair{bare: s}
		tb.Logf("bare   %s: %v", dir, s)
	}

	fwName := "firewall-off"
	if firewall {
		fwName = "firewall-on"
	}
	hubEnv := map[string]string{e2eEnvRole: e2eRoleTestnet, e2eEnvHost: e2eHubAddr}
	clientFW := e2eFirewallOff
	if firewall {
		hubEnv[e2eEnvPolicy] = e2ePolicyIperf
		clientFW = ""
	}
	hub := startE2EChild(tb, "hub", topo.hub, hubEnv)
	line, ok := hub.mark(e2eMarkTestnet, time.Now().Add(e2eHubWait))
	if !ok {
		tb.Fatalf("test network did not start:\n%s", hub.output())
	}
	url, setupKey, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(url, "http://"+e2eHubAddr+":") || setupKey == "" {
		tb.Fatalf("hub printed %q, want <management URL on %s> <setup key>", url, e2eHubAddr)
	}

	clients := map[string]*e2eChild{}
	for _, c := range []struct{ name, ns string }{{"a", topo.a}, {"b", topo.b}} {
		prof := ""
		if profDir != "" {
			prof = filepath.Join(profDir, "cpu-"+c.name+"-"+fwName+".prof")
		}
		clients[c.name] = startE2EChildProfiled(tb, c.name, c.ns, prof, map[string]string{
			e2eEnvRole: e2eRoleClient, e2eEnvMgmt: url, e2eEnvSetupKey: setupKey, e2eEnvName: "nbfsm-iperf-" + c.name,
			e2eEnvFirewall: clientFW,
		})
	}
	deadline := time.Now().Add(e2eClientsWait)
	peers := map[string]netip.Addr{} // client name → the overlay address of its peer
	for _, name := range []string{"a", "b"} {
		got, ok := clients[name].mark(e2eMarkPinged, deadline)
		if !ok {
			tb.Fatalf("client %s did not connect and ping within %v:\n%s\nhub:\n%s",
				name, e2eClientsWait, clients[name].output(), hub.output())
		}
		peer, err := iperfPeerOf(got)
		if err != nil {
			tb.Fatalf("client %s: %v", name, err)
		}
		peers[name] = peer
		tb.Logf("client %s: %s", name, got)
	}
	overlayB := peers["a"] // A's peer is B
	pids := map[string]int{"nbfsm-a": clients["a"].cmd.Process.Pid, "nbfsm-b": clients["b"].cmd.Process.Pid}
	for _, dir := range []string{iperfDirAB, iperfDirBA} {
		s, err := iperfRun(tb, topo, overlayB, seconds, dir == iperfDirBA, pids)
		if err != nil {
			tb.Fatalf("iperf3 tunnel %s: %v", dir, err)
		}
		p := res[dir]
		p.tunnel = s
		res[dir] = p
		tb.Logf("tunnel %s: %v", dir, s)
	}

	for _, name := range []string{"a", "b"} {
		if err := clients[name].stop(e2eStopWait); err != nil {
			tb.Errorf("client %s exited: %v\n%s", name, err, clients[name].output())
		}
	}
	if err := hub.stop(e2eStopWait); err != nil {
		tb.Errorf("test network exited: %v\n%s", err, hub.output())
	}
	for _, ns := range []string{topo.a, topo.b} {
		tb.Logf("UDP counters in %s: %s", ns, iperfUDPCounters(ns))
	}
	tb.Logf("summary (%s, one TCP stream, %d s each way):", fwName, seconds)
	for _, dir := range []string{iperfDirAB, iperfDirBA} {
		p := res[dir]
		tb.Logf("  %s: bare %.2f Gbit/s (%.3f CPU-s/Gbit, machine %.2f cores busy), tunnel %.2f Gbit/s (%.3f CPU-s/Gbit, machine %.2f cores busy), tunnel/bare %.1f %%",
			dir, p.bare.bps/1e9, p.bare.cpuPerGbit(), p.bare.machineCores(),
			p.tunnel.bps/1e9, p.tunnel.cpuPerGbit(), p.tunnel.machineCores(), 100*p.ratio())
	}
	if profDir != "" {
		tb.Logf("CPU profiles: go tool pprof -top %s", filepath.Join(profDir, "cpu-a-"+fwName+".prof"))
	}
	return res
}

// iperfRun runs one iperf3 test from namespace A to the server in B's
// namespace on addrB (underlay: the bare path; overlay: the tunnel);
// reverse makes B the sender. Besides the two iperf3 processes it counts
// the CPU of the processes in pids (name → pid) during the client's run.
func iperfRun(tb testing.TB, topo *e2eTopology, addrB netip.Addr, seconds int, reverse bool,
	pids map[string]int) (iperfSample, error) {
	server := exec.Command("ip", "netns", "exec", topo.b, "iperf3", "-s", "-1", "--forceflush",
		"-B", addrB.String(), "-p", iperfPort)
	out, err := server.StdoutPipe()
	if err != nil {
		return iperfSample{}, err
	}
	server.Stderr = server.Stdout
	if err := server.Start(); err != nil {
		return iperfSample{}, fmt.Errorf("start server: %w", err)
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
		_ = server.Process.Kill()
		s := <-serverOut
		_ = server.Wait()
		return s
	}
	timer := time.NewTimer(iperfServerWait)
	select {
	case <-ready:
		timer.Stop()
	case <-timer.C:
		return iperfSample{}, fmt.Errorf("server not listening within %v:\n%s", iperfServerWait, stopServer())
	}

	args := []string{"netns", "exec", topo.a, "iperf3", "-c", addrB.String(), "-p", iperfPort,
		"-t", strconv.Itoa(seconds), "-J"}
	if reverse {
		args = append(args, "-R")
	}
	client := exec.Command("ip", args...)
	var stdout, stderr strings.Builder
	client.Stdout, client.Stderr = &stdout, &stderr

	before := map[string]time.Duration{}
	var switches0 int64
	for name, pid := range pids {
		if before[name], err = iperfProcCPU(pid); err != nil {
			stopServer()
			return iperfSample{}, err
		}
		n, err := iperfProcSwitches(pid)
		if err != nil {
			stopServer()
			return iperfSample{}, err
		}
		switches0 += n
	}
	busy0, soft0, err := iperfMachineCPU()
	if err != nil {
		stopServer()
		return iperfSample{}, err
	}
	start := time.Now()
	if err := client.Start(); err != nil {
		stopServer()
		return iperfSample{}, fmt.Errorf("start client: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- client.Wait() }()
	top := time.NewTimer(time.Duration(seconds) * time.Second / 2)
	deadline := time.NewTimer(time.Duration(seconds)*time.Second + iperfClientSlack)
	defer top.Stop()
	defer deadline.Stop()
	var waitErr error
wait:
	for {
		select {
		case <-top.C:
			tb.Logf("top during %s:\n%s", iperfDirName(reverse), iperfTop())
		case waitErr = <-done:
			break wait
		case <-deadline.C:
			_ = client.Process.Kill()
			<-done
			stopServer()
			return iperfSample{}, fmt.Errorf("client not done within %v", iperfClientSlack)
		}
	}
	s := iperfSample{wall: time.Since(start), cpu: map[string]time.Duration{}}
	busy1, soft1, err := iperfMachineCPU()
	if err != nil {
		stopServer()
		return iperfSample{}, err
	}
	s.machine, s.softirq = busy1-busy0, soft1-soft0
	for name, pid := range pids {
		after, err := iperfProcCPU(pid)
		if err != nil {
			stopServer()
			return iperfSample{}, err
		}
		s.cpu[name] = after - before[name]
		n, err := iperfProcSwitches(pid)
		if err != nil {
			stopServer()
			return iperfSample{}, err
		}
		s.switches += n
	}
	s.switches -= switches0
	// The one-off server exits after the test; its exit (and rusage) is
	// waited for, and it is killed only past the deadline.
	var srv string
	srvWait := time.NewTimer(iperfServerWait)
	select {
	case srv = <-serverOut:
		srvWait.Stop()
	case <-srvWait.C:
		_ = server.Process.Kill()
		srv = <-serverOut
	}
	_ = server.Wait()
	if waitErr != nil {
		return iperfSample{}, fmt.Errorf("client: %w\n%s%s\nserver:\n%s", waitErr, stdout.String(), stderr.String(), srv)
	}
	s.cpu["iperf3-client"] = rusageCPU(client.ProcessState)
	s.cpu["iperf3-server"] = rusageCPU(server.ProcessState)
	if s.bps, s.retr, err = iperfParse([]byte(stdout.String())); err != nil {
		return iperfSample{}, err
	}
	return s, nil
}

// rusageCPU is the user+system CPU time of an exited process.
func rusageCPU(ps *os.ProcessState) time.Duration {
	if ps == nil {
		return 0
	}
	return ps.UserTime() + ps.SystemTime()
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

// iperfProcSwitches is the context switches, voluntary and not, of every
// live thread of a process (/proc/<pid>/task/*/status).
func iperfProcSwitches(pid int) (int64, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range tasks {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread ended meanwhile
		}
		for _, line := range strings.Split(string(raw), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || (k != "voluntary_ctxt_switches" && k != "nonvoluntary_ctxt_switches") {
				continue
			}
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/task/%s/status: %w", pid, t.Name(), err)
			}
			total += n
		}
	}
	return total, nil
}

// iperfMachineCPU is the busy time of all CPUs since boot (user, nice,
// system, irq, softirq, steal of /proc/stat's "cpu" line) and its softirq
// part.
func iperfMachineCPU() (busy, softirq time.Duration, err error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q", line)
	}
	var ticks [8]int64 // user nice system idle iowait irq softirq steal
	for i := range ticks {
		if ticks[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	b := ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
	return time.Duration(b) * iperfTick, time.Duration(ticks[6]) * iperfTick, nil
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
