package testnet

import "errors"

// ErrPort: an Options port is outside 0..65535.
var ErrPort = errors.New("testnet: port out of range")
