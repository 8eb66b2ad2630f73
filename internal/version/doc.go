// Package version holds the version strings nbfsm reports and shows.
//
// Two versions exist on purpose. [Reported] is what nbfsm tells the NetBird
// management server (PeerSystemMeta.netbirdVersion) and, through it, every
// other peer (RemotePeerConfig.agentVersion), and what it puts in the
// netBirdVersion field of its signal offers and answers. [NBFSM] is nbfsm's
// own release, shown by `netbird status` and in logs.
package version
