package lease

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cosmos/cosmos-sdk/codec"
	codectypes "github.com/cosmos/cosmos-sdk/codec/types"
	cryptocodec "github.com/cosmos/cosmos-sdk/crypto/codec"
	"github.com/cosmos/cosmos-sdk/crypto/hd"
	"github.com/cosmos/cosmos-sdk/crypto/keyring"
	"github.com/cosmos/cosmos-sdk/crypto/keys/secp256k1"
	"github.com/cosmos/cosmos-sdk/types/bech32"
	signingtypes "github.com/cosmos/cosmos-sdk/types/tx/signing"
	bip39 "github.com/cosmos/go-bip39"
)

// AddressPrefix is the bech32 prefix of market addresses (Akash's).
const AddressPrefix = "akash"

// hdPath is the Cosmos SDK's default derivation path (coin type 118).
var hdPath = hd.CreateHDPath(118, 0, 0).String()

// Signer signs market actions with one secp256k1 key of a Cosmos SDK
// keyring.
type Signer struct {
	kr   keyring.Keyring
	uid  string
	pub  []byte
	addr string
}

// NewKeyring returns an in-memory Cosmos SDK keyring (keys live as long as
// the process; tests, the embedded market, and tenants that pass keys in).
func NewKeyring() keyring.Keyring {
	reg := codectypes.NewInterfaceRegistry()
	cryptocodec.RegisterInterfaces(reg)
	return keyring.NewInMemory(codec.NewProtoCodec(reg))
}

// NewSigner returns a signer for the key uid of kr.
func NewSigner(kr keyring.Keyring, uid string) (*Signer, error) {
	rec, err := kr.Key(uid)
	if err != nil {
		return nil, fmt.Errorf("lease: key %q: %w", uid, err)
	}
	pk, err := rec.GetPubKey()
	if err != nil {
		return nil, fmt.Errorf("lease: key %q: %w", uid, err)
	}
	addr, err := bech32.ConvertAndEncode(AddressPrefix, pk.Address())
	if err != nil {
		return nil, err
	}
	return &Signer{kr: kr, uid: uid, pub: pk.Bytes(), addr: addr}, nil
}

// GenerateSigner creates key uid in kr: from seed deterministically (the
// same seed always gives the same key: the embedded market's providers),
// or randomly when seed is nil.
func GenerateSigner(kr keyring.Keyring, uid string, seed []byte) (*Signer, error) {
	var entropy []byte
	if seed == nil {
		var err error
		if entropy, err = bip39.NewEntropy(256); err != nil {
			return nil, err
		}
	} else {
		sum := sha256.Sum256(append([]byte("megha-market-key/"), seed...))
		entropy = sum[:]
	}
	mnemonic, err := bip39.NewMnemonic(entropy)
	if err != nil {
		return nil, err
	}
	if _, err := kr.NewAccount(uid, mnemonic, "", hdPath, hd.Secp256k1); err != nil {
		return nil, fmt.Errorf("lease: create key %q: %w", uid, err)
	}
	return NewSigner(kr, uid)
}

// Address is the signer's bech32 address.
func (s *Signer) Address() string { return s.addr }

// PubKey is the signer's compressed secp256k1 public key.
func (s *Signer) PubKey() []byte { return slices.Clone(s.pub) }

// Sign signs msg (a SignBytes result).
func (s *Signer) Sign(msg []byte) (Signed, error) {
	sig, _, err := s.kr.Sign(s.uid, msg, signingtypes.SignMode_SIGN_MODE_DIRECT)
	if err != nil {
		return Signed{}, fmt.Errorf("lease: sign with %q: %w", s.uid, err)
	}
	return Signed{PubKey: slices.Clone(s.pub), Signature: sig}, nil
}

// AddressOf returns the bech32 address of a compressed secp256k1 public key.
func AddressOf(pubKey []byte) (string, error) {
	if len(pubKey) != secp256k1.PubKeySize {
		return "", fmt.Errorf("%w: public key of %d bytes, want %d (compressed secp256k1)", ErrUnauthorized, len(pubKey), secp256k1.PubKeySize)
	}
	pk := &secp256k1.PubKey{Key: pubKey}
	return bech32.ConvertAndEncode(AddressPrefix, pk.Address())
}

// Verify checks that s is a signature of msg by the key of address addr.
func Verify(addr string, msg []byte, s Signed) error {
	got, err := AddressOf(s.PubKey)
	if err != nil {
		return err
	}
	if got != addr {
		return fmt.Errorf("%w: signed by %s, not %s", ErrUnauthorized, got, addr)
	}
	pk := &secp256k1.PubKey{Key: s.PubKey}
	if !pk.VerifySignature(msg, s.Signature) {
		return fmt.Errorf("%w: bad signature for %s", ErrUnauthorized, addr)
	}
	return nil
}

// ValidAddress reports whether addr is a bech32 address with the market's
// prefix.
func ValidAddress(addr string) error {
	hrp, _, err := bech32.DecodeAndConvert(addr)
	if err != nil {
		return fmt.Errorf("%w: address %q: %v", ErrInvalid, addr, err)
	}
	if hrp != AddressPrefix {
		return fmt.Errorf("%w: address %q has prefix %q, want %q", ErrInvalid, addr, hrp, AddressPrefix)
	}
	return nil
}

// The bytes each action's signature covers: a domain line, the action,
// then its fields one per line in a fixed order. Fields the market fills
// (IDs, times, reliability, latency) are not covered.

type signBuf struct{ strings.Builder }

func newSignBuf(action string) *signBuf {
	b := &signBuf{}
	b.WriteString("megha-market/v1\n" + action + "\n")
	return b
}

func (b *signBuf) field(k, v string) *signBuf {
	b.WriteString(k + "=" + strconv.Quote(v) + "\n")
	return b
}

func (b *signBuf) bytes() []byte { return []byte(b.String()) }

// OrderSignBytes is what a tenant signs to post an order.
func OrderSignBytes(o Order) []byte {
	return newSignBuf("order").field("tenant", o.Tenant).field("gpu_models", strings.Join(o.GPUModels, ",")).
		field("gpus_per_worker", strconv.Itoa(o.GPUsPerWorker)).field("workers", strconv.Itoa(o.Workers)).
		field("min_vram_gib", strconv.Itoa(o.MinVRAMGiB)).field("region", o.Region).
		field("max_price_per_gpu_hour", o.MaxPricePerGPUHour.String()).field("deposit", o.Deposit.String()).bytes()
}

// BidSignBytes is what a provider signs to bid.
func BidSignBytes(b Bid) []byte {
	keys := make([]string, 0, len(b.Attributes))
	for k := range b.Attributes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]string, len(keys))
	for i, k := range keys {
		attrs[i] = strconv.Quote(k) + ":" + strconv.Quote(b.Attributes[k])
	}
	return newSignBuf("bid").field("id", b.ID).field("order", b.OrderID).field("provider", b.Provider).
		field("gpu_model", b.GPUModel).field("vram_gib", strconv.Itoa(b.VRAMGiB)).field("gpus", strconv.Itoa(b.GPUs)).
		field("count", strconv.Itoa(b.Count)).field("price_per_block", b.PricePerBlock.String()).
		field("region", b.Region).field("attributes", strings.Join(attrs, ",")).bytes()
}

// AcceptSignBytes is what a tenant signs to accept a bid.
func AcceptSignBytes(r AcceptRequest) []byte {
	return newSignBuf("accept").field("tenant", r.Tenant).field("order", r.OrderID).field("bid", r.BidID).
		field("count", strconv.Itoa(r.Count)).bytes()
}

// CloseSignBytes is what a tenant signs to close a lease (order=false) or
// withdraw an order (order=true; LeaseID holds the order ID).
func CloseSignBytes(r CloseRequest, order bool) []byte {
	action := "close-lease"
	if order {
		action = "close-order"
	}
	return newSignBuf(action).field("tenant", r.Tenant).field("id", r.LeaseID).field("reason", r.Reason).bytes()
}

// DepositSignBytes is what a tenant signs to add to a lease's escrow.
func DepositSignBytes(r DepositRequest) []byte {
	return newSignBuf("deposit").field("tenant", r.Tenant).field("lease", r.LeaseID).field("amount", r.Amount.String()).bytes()
}

// errNoSigner is returned by helpers given a nil signer.
var errNoSigner = errors.New("lease: no signer")

// SignOrder fills req's signature for o with s (whose address must be
// o.Tenant).
func SignOrder(s *Signer, o Order) (OrderRequest, error) {
	if s == nil {
		return OrderRequest{}, errNoSigner
	}
	sig, err := s.Sign(OrderSignBytes(o))
	return OrderRequest{Order: o, Signed: sig}, err
}

// SignAccept signs an acceptance.
func SignAccept(s *Signer, r AcceptRequest) (AcceptRequest, error) {
	if s == nil {
		return r, errNoSigner
	}
	var err error
	r.Signed, err = s.Sign(AcceptSignBytes(r))
	return r, err
}

// SignClose signs a lease close (order=false) or an order withdrawal.
func SignClose(s *Signer, r CloseRequest, order bool) (CloseRequest, error) {
	if s == nil {
		return r, errNoSigner
	}
	var err error
	r.Signed, err = s.Sign(CloseSignBytes(r, order))
	return r, err
}

// SignDeposit signs a deposit.
func SignDeposit(s *Signer, r DepositRequest) (DepositRequest, error) {
	if s == nil {
		return r, errNoSigner
	}
	var err error
	r.Signed, err = s.Sign(DepositSignBytes(r))
	return r, err
}

// SignBid signs a bid in place (the provider's side).
func SignBid(s *Signer, b *Bid) error {
	if s == nil {
		return errNoSigner
	}
	sig, err := s.Sign(BidSignBytes(*b))
	if err != nil {
		return err
	}
	b.PubKey, b.Signature = sig.PubKey, sig.Signature
	return nil
}
