package mgmt

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestCheckFiles: existence from the file system, processIsRunning from a
// /proc whose processes' exe links name executables.
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "present")
	if err := os.WriteFile(present, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	daemon := filepath.Join(dir, "daemon")
	if err := os.WriteFile(daemon, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A fake /proc: pid 1 runs daemon (exe link), pid 2 has only a cmdline,
	// "self" is not a pid.
	proc := t.TempDir()
	for _, d := range []string{"1", "2", "self"} {
		if err := os.Mkdir(filepath.Join(proc, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(daemon, filepath.Join(proc, "1", "exe")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "2", "cmdline"), []byte("/usr/sbin/other\x00--flag\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	got := checkFiles([]string{present, daemon, missing, present, "", "/usr/sbin/other"}, proc)
	want := []File{
		{Path: present, Exist: true},
		{Path: daemon, Exist: true, ProcessRunning: true},
		{Path: missing},
		{Path: "/usr/sbin/other", Exist: fileExists("/usr/sbin/other"), ProcessRunning: true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("checkFiles\n got %+v\nwant %+v", got, want)
	}
	if CheckFiles(nil) != nil {
		t.Error("no checks: want no files")
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestCheckFilesRealProc: this test binary's own executable is running.
func TestCheckFilesRealProc(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		t.Skip("no /proc")
	}
	f := CheckFiles([]string{exe})
	if len(f) != 1 || !f[0].Exist || !f[0].ProcessRunning {
		t.Errorf("own executable: %+v", f)
	}
}

func TestInterfaceAddresses(t *testing.T) {
	for _, a := range InterfaceAddresses() {
		if !a.Prefix.IsValid() || a.Prefix.Addr().IsLoopback() {
			t.Errorf("bad or loopback address %v", a)
		}
	}
}

func TestMetaProtoPosture(t *testing.T) {
	m := Meta{Hostname: "h", NetworkAddresses: []NetworkAddress{{Prefix: netip.MustParsePrefix("198.18.0.12/15"), MAC: "02:00:00:00:00:01"}},
		Files: []File{{Path: "/x", Exist: true, ProcessRunning: true}}, Flags: Flags{DisableDNS: true}, BlockInbound: true}
	pb := m.proto()
	if len(pb.GetNetworkAddresses()) != 1 || pb.GetNetworkAddresses()[0].GetNetIP() != "198.18.0.12/15" ||
		pb.GetNetworkAddresses()[0].GetMac() != "02:00:00:00:00:01" {
		t.Errorf("networkAddresses %v", pb.GetNetworkAddresses())
	}
	if len(pb.GetFiles()) != 1 || !pb.GetFiles()[0].GetExist() || !pb.GetFiles()[0].GetProcessIsRunning() || pb.GetFiles()[0].GetPath() != "/x" {
		t.Errorf("files %v", pb.GetFiles())
	}
	if !pb.GetFlags().GetBlockInbound() || !pb.GetFlags().GetDisableDNS() || pb.GetFlags().GetDisableFirewall() {
		t.Errorf("flags %v", pb.GetFlags())
	}
}
