//go:build !android && !ios && !windows

/* SPDX-License-Identifier: MIT
 *
 * Copyright (C) 2017-2025 WireGuard LLC. All Rights Reserved.
 */

package device

import "golang.zx2c4.com/wireguard/conn"

const (
	QueueStagedSize = conn.IdealBatchSize
	// nbfsm: 16 batches per queue, not 1024. A full queue blocks its
	// producer, as upstream's does; shallow queues keep the buffers a
	// bulk flow cycles through few and cache-warm, and bound the memory
	// a backlog holds (nbfsm's docs/benchmarks.md, "Tunnel").
	QueueOutboundSize          = 16
	QueueInboundSize           = 16
	QueueHandshakeSize         = 1024
	MaxSegmentSize             = (1 << 16) - 1 // largest possible UDP datagram
	PreallocatedBuffersPerPool = 0             // Disable and allow for infinite memory growth
)
