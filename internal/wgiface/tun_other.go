//go:build !linux

package wgiface

import (
	"fmt"
	"net/netip"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/nbfsm/nbfsm/internal/sharedsock"
)

func createTUN(name string, _ int, _, _ netip.Prefix) (tun.Device, error) {
	return nil, fmt.Errorf("%w: tun mode (%s)", ErrUnsupported, name)
}

func newUAPIConfigurer(string, *device.Device, *sharedsock.Socket, *zap.Logger) (configurer, error) {
	return nil, ErrUnsupported
}
