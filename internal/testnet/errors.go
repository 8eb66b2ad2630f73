package testnet

import "errors"

// ErrPort: an Options port is outside 0..65535.
var ErrPort = errors.New("testnet: port out of range")

// ErrHost: Options.Host is not a specific IPv4 address.
var ErrHost = errors.New("testnet: host is not a specific IPv4 address")
