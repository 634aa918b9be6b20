package gilmsg

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// parseCRL parses a DER CRL of version 2, or of version 1 as `openssl ca
// -gencrl` writes without crl_extensions (fedmsg's own test CRLs), which
// [x509.ParseRevocationList] refuses ("unsupported crl version").
//
// A version 1 CRL differs from a version 2 one only in lacking the version
// field and extensions, so it is rewritten with the field added, parsed by
// the standard library, and given back its own signed bytes: the signature
// is checked, by the caller, over exactly what the issuer signed.
func parseCRL(der []byte) (*x509.RevocationList, error) {
	rl, err := x509.ParseRevocationList(der)
	if err == nil {
		return rl, nil
	}
	tbs, v2, ok := asVersion2CRL(der)
	if !ok {
		return nil, err // not a version 1 CRL: the standard library's reason
	}
	rl, err = x509.ParseRevocationList(v2)
	if err != nil {
		return nil, fmt.Errorf("version 1 CRL: %w", err)
	}
	if len(rl.Extensions) > 0 {
		return nil, errors.New("version 1 CRL with extensions")
	}
	for _, e := range rl.RevokedCertificateEntries {
		if len(e.Extensions) > 0 {
			return nil, errors.New("version 1 CRL with entry extensions")
		}
	}
	rl.Raw, rl.RawTBSRevocationList = der, tbs
	return rl, nil
}

// asVersion2CRL returns the signed part of a version 1 CRL, and the CRL
// with version v2 inserted at the start of that part; ok is false when der
// is not a CRL without a version field.
//
//	CertificateList ::= SEQUENCE { tbsCertList TBSCertList, signatureAlgorithm, signatureValue }
//	TBSCertList ::= SEQUENCE { version Version OPTIONAL, signature, issuer, thisUpdate, ... }
func asVersion2CRL(der []byte) (tbs, v2 []byte, ok bool) {
	input := cryptobyte.String(der)
	var list cryptobyte.String
	if !input.ReadASN1(&list, cbasn1.SEQUENCE) || !input.Empty() {
		return nil, nil, false
	}
	var rawTBS, tbsBody cryptobyte.String
	if !list.ReadASN1Element(&rawTBS, cbasn1.SEQUENCE) {
		return nil, nil, false
	}
	element := rawTBS
	if !element.ReadASN1(&tbsBody, cbasn1.SEQUENCE) || tbsBody.PeekASN1Tag(cbasn1.INTEGER) {
		return nil, nil, false
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(1) // v2
			b.AddBytes(tbsBody)
		})
		b.AddBytes(list) // signatureAlgorithm and signatureValue, as they are
	})
	out, err := b.Bytes()
	if err != nil {
		return nil, nil, false
	}
	return rawTBS, out, true
}

// crlSet is a verified CRL with its revoked serials indexed.
type crlSet struct {
	list    *x509.RevocationList
	revoked map[string]struct{}
}

// newCRLSet parses a CRL (PEM or DER, version 1 or 2) and checks that one
// of cas signed it, as OpenSSL does before trusting a CRL.
func newCRLSet(data []byte, cas []*x509.Certificate) (*crlSet, error) {
	der := data
	if b, _ := pem.Decode(data); b != nil {
		der = b.Bytes
	}
	rl, err := parseCRL(der)
	if err != nil {
		return nil, err
	}
	var sigErr error = errors.New("no CA issued it")
	for _, ca := range cas {
		if sigErr = rl.CheckSignatureFrom(ca); sigErr == nil {
			break
		}
	}
	if sigErr != nil {
		return nil, fmt.Errorf("signature: %w", sigErr)
	}
	set := &crlSet{list: rl, revoked: make(map[string]struct{}, len(rl.RevokedCertificateEntries))}
	for _, e := range rl.RevokedCertificateEntries {
		set.revoked[e.SerialNumber.String()] = struct{}{}
	}
	return set, nil
}

// check applies the CRL as OpenSSL's CRL_CHECK does: the CRL must be the
// issuer's and current, and the serial must not be on it.
func (c *crlSet) check(cert *x509.Certificate, now time.Time) *ValidationError {
	if !bytes.Equal(c.list.RawIssuer, cert.RawIssuer) {
		return invalid(ReasonCA, "no CRL for the certificate's issuer", nil)
	}
	if !c.list.NextUpdate.IsZero() && now.After(c.list.NextUpdate) {
		return invalid(ReasonCA, "CRL expired at "+c.list.NextUpdate.Format(time.RFC3339), nil)
	}
	if _, ok := c.revoked[cert.SerialNumber.String()]; ok {
		return invalid(ReasonRevoked, "serial "+cert.SerialNumber.String()+" is on the CRL", nil)
	}
	return nil
}
