//go:build cgo && !gilmsg_purego

package rsasig

// The whole cgo surface: libcrypto's copy of a key (EVP_PKEY) and contexts
// initialised once for SHA-1 PKCS#1 v1.5 and kept for reuse. The SHA-1 is
// taken in Go; libcrypto gets the 20-byte digest.

/*
#cgo pkg-config: libcrypto
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

// ctxFor makes a context of pkey ready to sign (sign != 0) or verify.
static EVP_PKEY_CTX *ctxFor(EVP_PKEY *pkey, int sign) {
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
	if (ctx == NULL) return NULL;
	if ((sign ? EVP_PKEY_sign_init(ctx) : EVP_PKEY_verify_init(ctx)) <= 0
	    || EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0
	    || EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha1()) <= 0) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

// keyFromDER reads PKCS#1 DER. d2i_PublicKey takes OpenSSL 3's direct
// path for RSA, not its decoders (d2i_PUBKEY), which cost a few hundred µs
// a key: a cold certificate chain waited on them.
static EVP_PKEY *keyFromDER(int private, const unsigned char *der, long n) {
	return private ? d2i_PrivateKey(EVP_PKEY_RSA, NULL, &der, n) : d2i_PublicKey(EVP_PKEY_RSA, NULL, &der, n);
}

// signEach signs n SHA-1 digests (digests, 20 bytes each, one after
// another) into n signatures of size bytes (sigs, likewise); it stops at
// the first failure and returns how many it signed.
static int signEach(EVP_PKEY_CTX *ctx, const unsigned char *digests, int n, unsigned char *sigs, size_t size) {
	for (int i = 0; i < n; i++) {
		size_t len = size;
		if (EVP_PKEY_sign(ctx, sigs + (size_t)i * size, &len, digests + (size_t)i * 20, 20) <= 0 || len != size) return i;
	}
	return n;
}

static void freeCtxs(EVP_PKEY_CTX **ctxs, int n) {
	for (int i = 0; i < n; i++) EVP_PKEY_CTX_free(ctxs[i]);
}
*/
import "C"

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// maxIdleCtxs bounds the contexts a key keeps between calls: as many as
// calls ran at once, up to this; more are made and freed per call.
const maxIdleCtxs = 64

// libKey is libcrypto's copy of a key with its idle contexts. Its C memory
// is freed by a cleanup once the libKey is garbage; every call keeps it alive
// until libcrypto is done.
type libKey struct {
	c     *libKeyC
	size  int
	signs bool
}

// libKeyC is what the cleanup frees; apart from libKey so the cleanup does
// not keep the libKey reachable.
type libKeyC struct {
	pkey *C.EVP_PKEY
	mu   sync.Mutex
	idle []*C.EVP_PKEY_CTX
}

func newLibPrivateKey(k *rsa.PrivateKey) *libKey {
	der := x509.MarshalPKCS1PrivateKey(k)
	defer clear(der)
	return newLibKey(der, true)
}

func newLibPublicKey(k *rsa.PublicKey) *libKey {
	return newLibKey(x509.MarshalPKCS1PublicKey(k), false)
}

func newLibKey(der []byte, private bool) *libKey {
	var priv C.int
	if private {
		priv = 1
	}
	pkey := C.keyFromDER(priv, (*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)))
	if pkey == nil {
		return nil
	}
	c := &libKeyC{pkey: pkey}
	k := &libKey{c: c, size: int(C.EVP_PKEY_get_size(pkey)), signs: private}
	runtime.AddCleanup(k, (*libKeyC).free, c)
	// A key libcrypto cannot make a context for stays with crypto/rsa.
	ctx := k.ctx()
	if ctx == nil {
		return nil
	}
	k.put(ctx)
	return k
}

func (c *libKeyC) free() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) > 0 {
		C.freeCtxs(&c.idle[0], C.int(len(c.idle)))
	}
	c.idle = nil
	C.EVP_PKEY_free(c.pkey)
}

func (k *libKey) ctx() *C.EVP_PKEY_CTX {
	c := k.c
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		ctx := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return ctx
	}
	c.mu.Unlock()
	var s C.int
	if k.signs {
		s = 1
	}
	return C.ctxFor(c.pkey, s)
}

func (k *libKey) put(ctx *C.EVP_PKEY_CTX) {
	c := k.c
	c.mu.Lock()
	if len(c.idle) < maxIdleCtxs {
		c.idle = append(c.idle, ctx)
		ctx = nil
	}
	c.mu.Unlock()
	if ctx != nil {
		C.EVP_PKEY_CTX_free(ctx)
	}
}

func (k *libKey) sign(text []byte) ([]byte, error) {
	sum := sha1.Sum(text)
	ctx := k.ctx()
	if ctx == nil {
		return nil, fmt.Errorf("gilmsg: RSA signing: libcrypto made no context")
	}
	sig := make([]byte, k.size)
	n := C.size_t(len(sig))
	rc := C.EVP_PKEY_sign(ctx, (*C.uchar)(unsafe.Pointer(&sig[0])), &n,
		(*C.uchar)(unsafe.Pointer(&sum[0])), C.size_t(len(sum)))
	k.put(ctx)
	runtime.KeepAlive(k)
	if rc <= 0 || int(n) != len(sig) {
		C.ERR_clear_error()
		return nil, fmt.Errorf("gilmsg: RSA signing: libcrypto failed (EVP_PKEY_sign %d)", int(rc))
	}
	return sig, nil
}

// signEach signs each of texts in one cgo call: a goroutine signing
// several holds its thread in libcrypto once, not once a signature, and
// Go's scheduler takes its P back and gives it back once.
func (k *libKey) signEach(texts [][]byte) ([][]byte, error) {
	if len(texts) == 0 {
		return nil, nil
	}
	digests := make([]byte, 0, sha1.Size*len(texts))
	for _, t := range texts {
		sum := sha1.Sum(t)
		digests = append(digests, sum[:]...)
	}
	ctx := k.ctx()
	if ctx == nil {
		return nil, fmt.Errorf("gilmsg: RSA signing: libcrypto made no context")
	}
	out := make([]byte, k.size*len(texts))
	n := C.signEach(ctx, (*C.uchar)(unsafe.Pointer(&digests[0])), C.int(len(texts)),
		(*C.uchar)(unsafe.Pointer(&out[0])), C.size_t(k.size))
	k.put(ctx)
	runtime.KeepAlive(k)
	if int(n) != len(texts) {
		C.ERR_clear_error()
		return nil, fmt.Errorf("gilmsg: RSA signing: libcrypto failed (EVP_PKEY_sign, signature %d of %d)", int(n)+1, len(texts))
	}
	sigs := make([][]byte, len(texts))
	for i := range sigs {
		sigs[i] = out[i*k.size : (i+1)*k.size : (i+1)*k.size]
	}
	return sigs, nil
}

func (k *libKey) verify(text, sig []byte) error {
	sum := sha1.Sum(text)
	ctx := k.ctx()
	if ctx == nil {
		return fmt.Errorf("%w: libcrypto made no context", ErrVerification)
	}
	rc := C.EVP_PKEY_verify(ctx, (*C.uchar)(unsafe.Pointer(&sig[0])), C.size_t(len(sig)),
		(*C.uchar)(unsafe.Pointer(&sum[0])), C.size_t(len(sum)))
	k.put(ctx)
	runtime.KeepAlive(k)
	if rc != 1 {
		// Failures leave errors on the thread's queue; cgo calls may
		// land on any thread, so none is left there to be misread.
		C.ERR_clear_error()
		return ErrVerification
	}
	return nil
}

func libVersion() string {
	return C.GoString(C.OpenSSL_version(C.OPENSSL_VERSION))
}
