package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/proto/daemonpb"
	"github.com/nbfsm/nbfsm/internal/version"
	"github.com/nbfsm/nbfsm/mgmtfsm"
)

// DefaultUpWait bounds Up's wait for connected.
const DefaultUpWait = 60 * time.Second

// unreachableAfter: Up gives up waiting after this many failed dials of a
// management server that never answered.
const unreachableAfter = 3

// oneShotWait bounds a login or logout outside the engine.
const oneShotWait = 30 * time.Second

type api struct {
	daemonpb.UnimplementedDaemonServiceServer
	d *Daemon
}

func (a *api) Up(ctx context.Context, req *daemonpb.UpRequest) (*daemonpb.UpResponse, error) {
	st, err := a.d.Up(ctx, req)
	if err != nil {
		return nil, err
	}
	return &daemonpb.UpResponse{Status: st}, nil
}

// Up starts the engine and waits as the UpRequest says (see daemon.proto).
// Its errors are gRPC statuses with a message for the user.
func (d *Daemon) Up(ctx context.Context, req *daemonpb.UpRequest) (*daemonpb.StatusResponse, error) {
	// Subscribe before starting: no transition between the start and the
	// first look is missed.
	sub := d.ring.Subscribe(256)
	defer sub.Close()
	if err := func() error {
		d.op.Lock()
		defer d.op.Unlock()
		changed, err := d.updateConfig(req.GetSettings())
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if changed && d.Client() != nil {
			d.log.Info("settings changed: restarting the engine")
			if err := d.stopLocked(); err != nil {
				d.log.Warn("engine stop", zap.Error(err))
			}
		}
		if err := d.startLocked(req.GetSetupKey()); err != nil {
			return status.Error(codes.Internal, "cannot start the engine: "+err.Error())
		}
		return nil
	}(); err != nil {
		return nil, err
	}
	if req.GetNoWait() {
		return d.status()
	}
	wait := DefaultUpWait
	if w := req.GetWait(); w != nil && w.AsDuration() > 0 {
		wait = w.AsDuration()
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		c := d.Client()
		if c == nil {
			return nil, status.Error(codes.Aborted, "the engine was stopped (netbird down) while waiting")
		}
		s, err := c.Status()
		if err != nil {
			return nil, status.Error(codes.Aborted, "the engine stopped while waiting: "+err.Error())
		}
		switch {
		case connected(s):
			return d.status()
		case s.State == engine.NeedsLogin:
			return nil, status.Error(codes.FailedPrecondition, needsLoginMessage(s, d.Config().ManagementURL.S))
		case s.State == engine.Starting && s.Management.State == mgmtfsm.Backoff && s.Management.Sessions >= unreachableAfter &&
			strings.Contains(s.Management.Reason, mgmt.ErrUnavailable.Error()):
			return nil, status.Errorf(codes.Unavailable, "management unreachable at %s (%d attempts: %s); "+
				"the engine keeps trying in the background (netbird status, netbird down to stop)",
				d.Config().ManagementURL.S, s.Management.Sessions, s.Management.Reason)
		}
		select {
		case <-sub.C():
		case <-ctx.Done():
			return nil, status.Error(codes.DeadlineExceeded, waitingMessage(s, d.Config().ManagementURL.S))
		}
	}
}

// needsLoginMessage says why management wants a login, and what to do.
func needsLoginMessage(s engine.Status, url string) string {
	reason := s.Management.Reason
	switch {
	case strings.Contains(reason, mgmt.ErrSetupKeyRejected.Error()):
		return fmt.Sprintf("needs login: management at %s refused the setup key (wrong, expired or revoked): %s; "+
			"give a valid one with `netbird up --setup-key KEY`", url, reason)
	case strings.Contains(reason, mgmt.ErrNotRegistered.Error()):
		return fmt.Sprintf("needs login: this peer is not registered with management at %s; "+
			"register it with `netbird up --setup-key KEY` (or --setup-key-file, NB_SETUP_KEY)", url)
	}
	return fmt.Sprintf("needs login at %s: %s; try `netbird up --setup-key KEY`", url, reason)
}

// waitingMessage says what the engine still waits for.
func waitingMessage(s engine.Status, url string) string {
	if !strings.HasPrefix(string(s.Management.State), string(mgmtfsm.Online)) {
		msg := fmt.Sprintf("not connected yet: management at %s is %s", url, s.Management.State)
		if s.Management.Reason != "" {
			msg += " (unreachable? " + s.Management.Reason + ")"
		}
		return msg + "; the engine keeps trying in the background (netbird status)"
	}
	msg := fmt.Sprintf("not connected yet: logged in, signal is %s", s.Signal.State)
	if s.Signal.Reason != "" {
		msg += " (" + s.Signal.Reason + ")"
	}
	return msg + "; the engine keeps trying in the background (netbird status)"
}

func (a *api) Down(context.Context, *daemonpb.DownRequest) (*daemonpb.DownResponse, error) {
	a.d.op.Lock()
	defer a.d.op.Unlock()
	if err := a.d.stopLocked(); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &daemonpb.DownResponse{}, nil
}

// oneShot runs fn with a management client of the config's URL and key.
func (d *Daemon) oneShot(ctx context.Context, fn func(ctx context.Context, c *mgmt.Client, serverKey [32]byte) error) error {
	cfg := d.Config()
	key, err := cfg.Key()
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	c, err := mgmt.Dial(cfg.ManagementURL.S, key, append([]mgmt.Option{mgmt.WithLogger(d.o.Logger)}, d.o.MgmtOptions...)...)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, oneShotWait)
	defer cancel()
	sk, err := c.ServerKey(ctx)
	if err == nil {
		err = fn(ctx, c, sk)
	}
	return mgmtStatus(err, cfg.ManagementURL.S)
}

// mgmtStatus turns a management error into a status a user can act on.
func mgmtStatus(err error, url string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mgmt.ErrSetupKeyRejected):
		return status.Errorf(codes.PermissionDenied, "management at %s refused the setup key (wrong, expired or revoked)", url)
	case errors.Is(err, mgmt.ErrNotRegistered):
		return status.Errorf(codes.FailedPrecondition, "this peer is not registered with management at %s: give --setup-key", url)
	case errors.Is(err, mgmt.ErrUnavailable):
		return status.Errorf(codes.Unavailable, "management unreachable at %s: %v", url, err)
	}
	return status.Errorf(codes.Unknown, "management at %s: %v", url, err)
}

func (a *api) Login(ctx context.Context, req *daemonpb.LoginRequest) (*daemonpb.LoginResponse, error) {
	d := a.d
	d.op.Lock()
	defer d.op.Unlock()
	changed, err := d.updateConfig(req.GetSettings())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if c := d.Client(); c != nil {
		if changed {
			return nil, status.Error(codes.FailedPrecondition, "the engine is up with other settings: run `netbird down` first")
		}
		if req.GetSetupKey() != "" {
			if err := c.SetSetupKey(req.GetSetupKey()); err != nil {
				return nil, status.Error(codes.Internal, err.Error())
			}
		}
		return &daemonpb.LoginResponse{}, nil
	}
	var res *mgmt.LoginResult
	d.mu.Lock()
	meta := d.meta()
	d.mu.Unlock()
	err = d.oneShot(ctx, func(ctx context.Context, c *mgmt.Client, sk [32]byte) error {
		var err error
		res, err = c.Login(ctx, sk, req.GetSetupKey(), meta)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &daemonpb.LoginResponse{NetbirdIp: res.Peer.Address.String(), Fqdn: res.Peer.FQDN}, nil
}

func (a *api) Logout(ctx context.Context, _ *daemonpb.LogoutRequest) (*daemonpb.LogoutResponse, error) {
	d := a.d
	d.op.Lock()
	defer d.op.Unlock()
	if err := d.stopLocked(); err != nil {
		d.log.Warn("engine stop", zap.Error(err))
	}
	err := d.oneShot(ctx, func(ctx context.Context, c *mgmt.Client, sk [32]byte) error { return c.Logout(ctx, sk) })
	if err != nil {
		return nil, err
	}
	d.log.Info("logged out: peer deregistered")
	return &daemonpb.LogoutResponse{}, nil
}

func (a *api) Status(context.Context, *daemonpb.StatusRequest) (*daemonpb.StatusResponse, error) {
	return a.d.status()
}

// status is the engine's snapshot with the daemon's own facts.
func (d *Daemon) status() (*daemonpb.StatusResponse, error) {
	cfg := d.Config()
	c := d.Client()
	out := &daemonpb.StatusResponse{DaemonVersion: version.NBFSM, InterfaceName: cfg.WgIface,
		WireguardPort: int32(cfg.WgPort), Netstack: d.o.Netstack, KernelInterface: false,
		Management: &daemonpb.Link{Url: cfg.ManagementURL.S}, Signal: &daemonpb.Link{}}
	if k, err := cfg.Key(); err == nil {
		out.PublicKey = k.PublicKey().String()
	}
	if c == nil {
		out.EngineState = "down"
		return out, nil
	}
	s, err := c.Status()
	if err != nil {
		out.EngineState = "down"
		return out, nil
	}
	out.EngineRunning = true
	out.WireguardPort = int32(c.LocalAddr().Port())
	out.EngineState, out.Since = string(s.State), ts(s.Since)
	if s.Address.IsValid() {
		out.Address = s.Address.String()
	}
	out.Fqdn, out.Serial = s.FQDN, s.Serial
	out.Management = link(s.Management, cfg.ManagementURL.S)
	out.Signal = link(s.Signal, "")
	out.Signal.Url = s.SignalURI
	for _, r := range s.Relays {
		out.Relays = append(out.Relays, &daemonpb.Relay{Uri: r.URI, Available: r.Available, Error: r.Error, Address: r.Address})
	}
	for _, p := range s.Peers {
		pp := &daemonpb.Peer{PublicKey: p.Key.String(), Fqdn: p.FQDN, State: string(p.State), Since: ts(p.Since),
			Connection: p.Connection, LocalType: p.LocalType, RemoteType: p.RemoteType, LastError: p.LastErr,
			Timers: int32(p.Timers), LastHandshake: ts(p.LastHandshake), RxBytes: p.RxBytes, TxBytes: p.TxBytes,
			RelayAddress: p.RelayAddress}
		if p.Endpoint.IsValid() {
			pp.Endpoint = p.Endpoint.String()
		}
		if p.LocalEndpoint.IsValid() {
			pp.LocalEndpoint = p.LocalEndpoint.String()
		}
		if p.Latency > 0 {
			pp.Latency = durationpb.New(p.Latency)
		}
		for _, a := range p.AllowedIPs {
			pp.AllowedIps = append(pp.AllowedIps, a.String())
		}
		out.Peers = append(out.Peers, pp)
	}
	return out, nil
}

func link(l engine.LinkStatus, url string) *daemonpb.Link {
	return &daemonpb.Link{State: string(l.State), Since: ts(l.Since), Sessions: int32(l.Sessions), Reason: l.Reason, Url: url}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// Events streams the ring: stored records first when asked, then live ones
// while follow is set.
func (a *api) Events(req *daemonpb.EventsRequest, stream daemonpb.DaemonService_EventsServer) error {
	var sub *fsm.Subscription
	if req.GetFollow() {
		sub = a.d.ring.Subscribe(1024)
		defer sub.Close()
	}
	var last time.Time
	if req.GetHistory() || !req.GetFollow() {
		for _, r := range a.d.ring.Snapshot() {
			if err := stream.Send(event(r)); err != nil {
				return err
			}
			last = r.At
		}
	}
	if sub == nil {
		return nil
	}
	for {
		select {
		case r, ok := <-sub.C():
			if !ok {
				return nil
			}
			if !r.At.After(last) && !last.IsZero() {
				continue // already sent from the snapshot
			}
			if err := stream.Send(event(r)); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func event(r fsm.Record) *daemonpb.Event {
	return &daemonpb.Event{Machine: r.Machine, Kind: r.Kind, From: string(r.From), Event: string(r.Event), To: string(r.To),
		At: timestamppb.New(r.At), Internal: r.Internal, Cause: r.Cause, Gen: r.Gen}
}

func (a *api) Debug(context.Context, *daemonpb.DebugRequest) (*daemonpb.DebugResponse, error) {
	return a.d.debug(), nil
}

func (d *Daemon) debug() *daemonpb.DebugResponse {
	out := &daemonpb.DebugResponse{SignalRejected: map[string]uint64{}, Socket: map[string]uint64{},
		LinkReconnects: map[string]uint64{}, TraceDropped: d.ring.Dropped()}
	snap := d.counts.Snapshot()
	out.PeerSendFailures = snap.SendFailures
	out.NetworkChanges = snap.NetworkChanges
	for k, v := range snap.Reconnects {
		out.LinkReconnects[k] = v
	}
	c := d.Client()
	if c == nil {
		return out
	}
	if s, err := c.Status(); err == nil {
		l := s.Loop
		out.Dispatched, out.Transitions, out.Internal, out.Ignored, out.Unhandled = l.Dispatched, l.Transitions, l.Internal, l.Ignored, l.Unhandled
		out.StaleGeneration, out.StaleTimer, out.UnknownTarget, out.TimersArmed, out.TimersFired = l.StaleGen, l.StaleTimer, l.UnknownTarget, l.TimersArmed, l.TimersFired
	}
	ss := c.SignalStats()
	out.SignalIn, out.SignalOut, out.SignalSendErrors = ss.In, ss.Out, ss.SendErrors
	for k, v := range SignalRejected(ss) {
		out.SignalRejected[k] = v
	}
	so := c.SocketStats()
	for k, v := range map[string]uint64{"wireguard_in": so.WireGuardIn, "wireguard_out": so.WireGuardOut, "stun_in": so.STUNIn,
		"stun_out": so.STUNOut, "stun_responded": so.Responded, "punches": so.Punches, "dropped": so.Dropped,
		"relay_in": so.RelayIn, "relay_out": so.RelayOut} {
		out.Socket[k] = v
	}
	return out
}
