package sigwire

import (
	"fmt"

	"golang.org/x/crypto/nacl/box"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
)

func sprint(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// sealRaw seals arbitrary plaintext bytes (not necessarily a Body) from priv
// to `to`, as a hostile or buggy peer could.
func sealRaw(priv, to wgtypes.Key, plain []byte, nonce [nbcrypto.NonceSize]byte) *signalpb.EncryptedMessage {
	pk, sk := [32]byte(to), [32]byte(priv)
	body := box.Seal(nonce[:], plain, &nonce, &pk, &sk)
	return &signalpb.EncryptedMessage{Key: priv.PublicKey().String(), RemoteKey: to.String(), Body: body}
}
