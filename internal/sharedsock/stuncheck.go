package sharedsock

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // MESSAGE-INTEGRITY is HMAC-SHA1 by RFC 5389
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// STUN message checks of RFC 5389 §15.4 (MESSAGE-INTEGRITY) and §15.5
// (FINGERPRINT) that hold wherever the attribute sits in the message.
//
// pion's stun.Fingerprint.Check assumes FINGERPRINT is the last attribute
// (CRC over all but the last 8 bytes). Official NetBird peers' ICE puts a
// comprehension-optional attribute 0x8100 (a candidate-pair id) after
// FINGERPRINT in every Binding request (PROTOCOL.md §5), which that check
// rejects. Here both checks use the rule MESSAGE-INTEGRITY has always had:
// the digest covers the message up to the attribute, with the header's
// length field set as if the attribute ended the message. Attributes after
// FINGERPRINT must be comprehension-optional (type ≥ 0x8000) and are
// otherwise ignored.

const (
	stunHeaderSize       = 20
	stunAttrHeaderSize   = 4
	attrMessageIntegrity = 0x0008
	attrFingerprint      = 0x8028
	fingerprintXOR       = 0x5354554e
	integritySize        = sha1.Size // 20
	fingerprintSize      = 4
	stunMagicCookie      = 0x2112A442
)

// stunAttr is one attribute's place in a raw message.
type stunAttr struct {
	typ   uint16
	start int // offset of the attribute header
	size  int // value length, without padding
}

// walkSTUN returns the attributes of a raw STUN message in order, or an
// error if the header or any attribute does not fit.
func walkSTUN(raw []byte) ([]stunAttr, error) {
	if len(raw) < stunHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadSTUN, len(raw))
	}
	if binary.BigEndian.Uint32(raw[4:8]) != stunMagicCookie || raw[0]&0xc0 != 0 {
		return nil, fmt.Errorf("%w: no magic cookie", ErrBadSTUN)
	}
	n := int(binary.BigEndian.Uint16(raw[2:4]))
	if n%4 != 0 || stunHeaderSize+n != len(raw) {
		return nil, fmt.Errorf("%w: length %d for %d bytes", ErrBadSTUN, n, len(raw))
	}
	attrs := make([]stunAttr, 0, 8)
	for off := stunHeaderSize; off < len(raw); {
		if len(raw)-off < stunAttrHeaderSize {
			return nil, fmt.Errorf("%w: truncated attribute", ErrBadSTUN)
		}
		a := stunAttr{
			typ:   binary.BigEndian.Uint16(raw[off:]),
			start: off,
			size:  int(binary.BigEndian.Uint16(raw[off+2:])),
		}
		end := off + stunAttrHeaderSize + (a.size+3)&^3
		if end > len(raw) {
			return nil, fmt.Errorf("%w: attribute 0x%04x overruns the message", ErrBadSTUN, a.typ)
		}
		attrs = append(attrs, a)
		off = end
	}
	return attrs, nil
}

// headerWithLength is raw's 20-byte header with the length field set so
// that the message would end at offset end.
func headerWithLength(raw []byte, end int) [stunHeaderSize]byte {
	var h [stunHeaderSize]byte
	copy(h[:], raw[:stunHeaderSize])
	binary.BigEndian.PutUint16(h[2:4], uint16(end-stunHeaderSize))
	return h
}

// CheckFingerprint verifies raw's FINGERPRINT attribute (RFC 5389 §15.5):
// CRC-32 of the message up to the attribute, with the length field set as
// if FINGERPRINT ended the message, XOR 0x5354554e. Attributes after it must
// be comprehension-optional. A message without FINGERPRINT fails with
// ErrNoFingerprint (the caller decides whether that is acceptable).
func CheckFingerprint(raw []byte) error {
	attrs, err := walkSTUN(raw)
	if err != nil {
		return err
	}
	for i, a := range attrs {
		if a.typ != attrFingerprint {
			continue
		}
		if a.size != fingerprintSize {
			return fmt.Errorf("%w: fingerprint of %d bytes", ErrBadSTUN, a.size)
		}
		for _, after := range attrs[i+1:] {
			if after.typ < 0x8000 {
				return fmt.Errorf("%w: required attribute 0x%04x after fingerprint", ErrBadSTUN, after.typ)
			}
		}
		end := a.start + stunAttrHeaderSize + fingerprintSize
		h := headerWithLength(raw, end)
		crc := crc32.ChecksumIEEE(h[:])
		crc = crc32.Update(crc, crc32.IEEETable, raw[stunHeaderSize:a.start])
		got := binary.BigEndian.Uint32(raw[a.start+stunAttrHeaderSize:])
		if crc^fingerprintXOR != got {
			return fmt.Errorf("%w: fingerprint %08x, computed %08x", ErrBadFingerprint, got, crc^fingerprintXOR)
		}
		return nil
	}
	return ErrNoFingerprint
}

// CheckIntegrity verifies raw's MESSAGE-INTEGRITY attribute (RFC 5389
// §15.4) with key (the short-term password for ICE): HMAC-SHA1 of the
// message up to the attribute, with the length field set to end right after
// MESSAGE-INTEGRITY. Attributes after it (FINGERPRINT, 0x8100, …) are not
// covered, as the RFC says.
func CheckIntegrity(raw []byte, key []byte) error {
	attrs, err := walkSTUN(raw)
	if err != nil {
		return err
	}
	for _, a := range attrs {
		if a.typ != attrMessageIntegrity {
			continue
		}
		if a.size != integritySize {
			return fmt.Errorf("%w: integrity of %d bytes", ErrBadSTUN, a.size)
		}
		end := a.start + stunAttrHeaderSize + integritySize
		h := headerWithLength(raw, end)
		mac := hmac.New(sha1.New, key)
		mac.Write(h[:])
		mac.Write(raw[stunHeaderSize:a.start])
		if !hmac.Equal(mac.Sum(nil), raw[a.start+stunAttrHeaderSize:end]) {
			return ErrBadIntegrity
		}
		return nil
	}
	return ErrNoIntegrity
}

// CheckRequest runs both checks the way an ICE agent must for a
// connectivity check: MESSAGE-INTEGRITY with pwd is required, FINGERPRINT
// is checked when present.
func CheckRequest(raw []byte, pwd string) error {
	if err := CheckIntegrity(raw, []byte(pwd)); err != nil {
		return err
	}
	if err := CheckFingerprint(raw); err != nil && !errors.Is(err, ErrNoFingerprint) {
		return err
	}
	return nil
}
