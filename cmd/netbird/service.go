package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/nbfsm/nbfsm/cmd/netbird/internal/daemon"
	"github.com/nbfsm/nbfsm/internal/config"
)

// The systemd unit of `netbird service install`.
const (
	serviceName = "netbird"
	unitPath    = "/etc/systemd/system/netbird.service"
)

var unitTemplate = template.Must(template.New("unit").Parse(`[Unit]
Description=NetBird mesh VPN client (nbfsm)
Documentation=https://github.com/nbfsm/nbfsm
After=network-online.target syslog.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={{.Exec}}
Restart=on-failure
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=30
{{- range .Env}}
Environment={{.}}
{{- end}}

[Install]
WantedBy=multi-user.target
`))

// unitData fills the template.
type unitData struct {
	Exec string
	Env  []string
}

// systemdQuote quotes one ExecStart word when it needs it.
func systemdQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\$%;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`, `%`, `%%`)
	return `"` + r.Replace(s) + `"`
}

// renderUnit renders the unit for the binary at bin with the daemon's flags.
func renderUnit(bin string, args []string, env []string) (string, error) {
	words := []string{systemdQuote(bin), "service", "run"}
	for _, a := range args {
		words = append(words, systemdQuote(a))
	}
	var b bytes.Buffer
	err := unitTemplate.Execute(&b, unitData{Exec: strings.Join(words, " "), Env: env})
	return b.String(), err
}

// hasSystemd: the system was booted with systemd.
func hasSystemd() bool {
	st, err := os.Stat("/run/systemd/system")
	return err == nil && st.IsDir()
}

func systemctl(args ...string) error {
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

var errNoSystemd = errors.New("systemd is not running on this machine: run the daemon with `netbird service run` under your init system")

func newServiceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "The daemon as an OS service: install, uninstall, start, stop, restart, status, run",
	}
	var socketGroup, metricsAddr string
	run := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon in the foreground (what the service runs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, level, done, err := g.logger(cmd.OutOrStdout())
			if err != nil {
				return err
			}
			defer done()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			d, err := daemon.New(daemon.Options{ConfigPath: g.configPath, Netstack: netstackMode(), Logger: log,
				Level: level, LogFile: g.logFilePath(), NetworkMonitor: monitorFactory()})
			if err != nil {
				return err
			}
			l, err := daemon.Listen(g.daemonAddr, socketGroup)
			if err != nil {
				_ = d.Close()
				return err
			}
			stopMetrics, err := serveMetrics(metricsAddr, d, log)
			if err != nil {
				_ = l.Close()
				_ = d.Close()
				return err
			}
			defer stopMetrics()
			if err := d.AutoConnect(); err != nil {
				log.Warn("auto-connect failed; waiting for `netbird up`")
			}
			return d.Serve(ctx, l)
		},
	}
	run.Flags().StringVar(&socketGroup, "socket-group", "", "group allowed to use the daemon socket (mode 0660; default: root only, 0600)")
	run.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this host:port (off by default)")

	install := &cobra.Command{
		Use:   "install",
		Short: "Install the daemon as a systemd service (netbird.service)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !hasSystemd() {
				return errNoSystemd
			}
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			if bin, err = filepath.EvalSymlinks(bin); err != nil {
				return err
			}
			args := []string{"--config", g.configPath, "--daemon-addr", g.daemonAddr, "--log-level", g.logLevel, "--log-file", g.logFile}
			if socketGroup != "" {
				args = append(args, "--socket-group", socketGroup)
			}
			if metricsAddr != "" {
				args = append(args, "--metrics-addr", metricsAddr)
			}
			var env []string
			if netstackMode() {
				env = append(env, "NB_USE_NETSTACK_MODE=true")
			}
			unit, err := renderUnit(bin, args, env)
			if err != nil {
				return err
			}
			if err := config.WriteAtomic(unitPath, []byte(unit)); err != nil {
				return fmt.Errorf("write %s: %w", unitPath, err)
			}
			if err := os.Chmod(unitPath, 0o644); err != nil {
				return err
			}
			if err := systemctl("daemon-reload"); err != nil {
				return err
			}
			if err := systemctl("enable", serviceName); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "NetBird service installed (%s); start it with `netbird service start`\n", unitPath)
			return nil
		},
	}
	install.Flags().StringVar(&socketGroup, "socket-group", "", "group allowed to use the daemon socket")
	install.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this host:port")

	uninstall := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the systemd service",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !hasSystemd() {
				return errNoSystemd
			}
			_ = systemctl("stop", serviceName)
			_ = systemctl("disable", serviceName)
			if err := os.Remove(unitPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if err := systemctl("daemon-reload"); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "NetBird service uninstalled")
			return nil
		},
	}
	cmd.AddCommand(run, install, uninstall)
	for _, v := range []struct{ name, short, done string }{
		{"start", "Start the service", "started"},
		{"stop", "Stop the service (tunnels removed, interface deleted)", "stopped"},
		{"restart", "Restart the service", "restarted"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use: v.name, Short: v.short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if !hasSystemd() {
					return errNoSystemd
				}
				if err := systemctl(v.name, serviceName); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "NetBird service %s\n", v.done)
				return nil
			},
		})
	}
	cmd.AddCommand(&cobra.Command{
		Use: "status", Short: "Show whether the service is running", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !hasSystemd() {
				return errNoSystemd
			}
			out, err := exec.Command("systemctl", "is-active", serviceName).Output()
			state := strings.TrimSpace(string(out))
			if state == "" {
				state = "unknown"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "NetBird service status: %s\n", state)
			if err != nil && state != "active" {
				return errCheckFailed
			}
			return nil
		},
	})
	return cmd
}
