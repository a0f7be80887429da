// Package edverify checks Ed25519 signatures made by one known key, with the
// same verdict as crypto/ed25519.Verify and about a third of its CPU.
//
// Every WebSocket handshake and every API call checks its token's Ed25519
// signature, always against one of the server's own few keys. The standard
// check, R == [s]B − [h]A, decompresses A and walks 253 doublings on every
// call because it must accept any key. With the key known in advance, both
// products are fixed-base multiplications: a table of j·64^i·P (i < 43,
// 1 ≤ j ≤ 32) per point turns each into at most 43 additions and no
// doubling. A table is 168 KiB and costs about 4 ms to build, once per key
// (and once for the generator).
//
// Signature checks handle only public data, so the table lookups and the
// digit loop may depend on the values (variable time), as the standard
// library's own check does.
package edverify

import (
	"crypto/ed25519"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"sync"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Key verifies signatures of one Ed25519 public key. Its zero value is not
// usable; make one with New.
type Key struct {
	public [ed25519.PublicKeySize]byte
	ensure sync.Once
	minusA *table // multiples of the negated public key
	badKey bool   // the public key does not decode to a point: nothing verifies
}

// New returns a verifier for pub. The tables are built on first use.
func New(pub ed25519.PublicKey) (*Key, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("edverify: public key must be 32 bytes")
	}
	k := new(Key)
	copy(k.public[:], pub)
	return k, nil
}

// Verify reports whether sig is a valid signature of message by the key,
// exactly as crypto/ed25519.Verify(pub, message, sig) would.
func (k *Key) Verify(message, sig []byte) bool {
	k.ensure.Do(k.build)
	if k.badKey || len(sig) != ed25519.SignatureSize || sig[63]&224 != 0 {
		return false
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(k.public[:])
	h.Write(message)
	var digest [sha512.Size]byte
	hram, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))
	if err != nil {
		return false
	}

	var acc extended
	acc.identity()
	acc.addMultiple(baseTable(), s)
	acc.addMultiple(k.minusA, hram)
	var r [32]byte
	acc.encode(&r)
	return subtle.ConstantTimeCompare(r[:], sig[:32]) == 1
}

func (k *Key) build() {
	a, err := new(edwards25519.Point).SetBytes(k.public[:])
	if err != nil {
		k.badKey = true
		return
	}
	k.minusA = newTable(new(edwards25519.Point).Negate(a))
}

// baseTable holds the multiples of the generator, shared by all keys.
var baseTable = sync.OnceValue(func() *table { return newTable(edwards25519.NewGeneratorPoint()) })

// niels is an affine point (x, y) kept as y+x, y−x and 2·d·x·y: the form a
// mixed addition consumes without further multiplications.
type niels struct {
	yPlusX, yMinusX, xy2d field.Element
}

// Each digit of a scalar covers window bits. Wider windows mean fewer
// additions and bigger tables: 4 bits took 18 µs per check with 60 KiB per
// table here, 5 took 16 µs with 96 KiB, 6 takes 14 µs with 168 KiB. A digit
// and its carry must fit an int8, so window stays at most 6.
const (
	window  = 6
	digitsN = (253 + window) / window // the top digit takes the last carry
	half    = 1 << (window - 1)
)

// table[i][j] is (j+1)·2^(window·i)·P.
type table [digitsN][half]niels

// twoD is 2·d, d = −121665/121666 the curve constant.
var twoD = func() field.Element {
	var one, num, den, d field.Element
	one.One()
	num.Mult32(&one, 121665)
	den.Mult32(&one, 121666)
	d.Multiply(&num, den.Invert(&den))
	d.Negate(&d)
	return *d.Add(&d, &d)
}()

func newTable(p *edwards25519.Point) *table {
	t := new(table)
	row := new(edwards25519.Point).Set(p) // 16^i·P
	for i := range t {
		multiple := new(edwards25519.Point).Set(row)
		for j := range t[i] {
			if j > 0 {
				multiple.Add(multiple, row)
			}
			t[i][j].set(multiple)
		}
		for range window {
			row.Add(row, row)
		}
	}
	return t
}

func (n *niels) set(p *edwards25519.Point) {
	X, Y, Z, _ := p.ExtendedCoordinates()
	var zInv, x, y field.Element
	zInv.Invert(Z)
	x.Multiply(X, &zInv)
	y.Multiply(Y, &zInv)
	n.yPlusX.Add(&y, &x)
	n.yMinusX.Subtract(&y, &x)
	n.xy2d.Multiply(&x, &y)
	n.xy2d.Multiply(&n.xy2d, &twoD)
}

// extended is a point in extended coordinates: x = X/Z, y = Y/Z, x·y = T/Z.
type extended struct {
	X, Y, Z, T field.Element
}

func (p *extended) identity() {
	p.X.Zero()
	p.Y.One()
	p.Z.One()
	p.T.Zero()
}

// addMultiple adds s·P to p, where t is P's table: s in signed base-16
// digits d_i in [−8, 8] is Σ d_i·16^i, and each nonzero digit is one entry.
func (p *extended) addMultiple(t *table, s *edwards25519.Scalar) {
	var digits [digitsN]int8
	signedRadix(s.Bytes(), &digits)
	for i, d := range digits {
		switch {
		case d > 0:
			p.add(&t[i][d-1], false)
		case d < 0:
			p.add(&t[i][-d-1], true)
		}
	}
}

// add sets p to p + q, or p − q when negate is set. The unified formula for
// a = −1 (Hisil–Wong–Carter–Dawson, "madd-2008-hwcd-3") is complete on this
// curve, so it holds for the identity and for doubling alike.
func (p *extended) add(q *niels, negate bool) {
	plus, minus := &q.yPlusX, &q.yMinusX
	if negate { // −(x, y) = (−x, y): y+x and y−x swap, x·y changes sign
		plus, minus = minus, plus
	}
	var a, b, c, d, e, f, g, h field.Element
	a.Subtract(&p.Y, &p.X)
	a.Multiply(&a, minus)
	b.Add(&p.Y, &p.X)
	b.Multiply(&b, plus)
	c.Multiply(&p.T, &q.xy2d)
	d.Add(&p.Z, &p.Z)
	e.Subtract(&b, &a)
	h.Add(&b, &a)
	if negate {
		f.Add(&d, &c)
		g.Subtract(&d, &c)
	} else {
		f.Subtract(&d, &c)
		g.Add(&d, &c)
	}
	p.X.Multiply(&e, &f)
	p.Y.Multiply(&g, &h)
	p.T.Multiply(&e, &h)
	p.Z.Multiply(&f, &g)
}

// encode writes p's 32-byte encoding: y, with the sign of x in the top bit.
func (p *extended) encode(out *[32]byte) {
	var zInv, x, y field.Element
	zInv.Invert(&p.Z)
	x.Multiply(&p.X, &zInv)
	y.Multiply(&p.Y, &zInv)
	copy(out[:], y.Bytes())
	out[31] |= byte(x.IsNegative() << 7)
}

// signedRadix writes the 32-byte little-endian scalar b (below 2^253) as
// digits in [−half, half] with b = Σ digits[i]·2^(window·i).
func signedRadix(b []byte, digits *[digitsN]int8) {
	for i := range digits {
		bit := i * window
		var v uint16
		if bit/8 < 32 {
			v = uint16(b[bit/8])
		}
		if bit/8+1 < 32 {
			v |= uint16(b[bit/8+1]) << 8
		}
		digits[i] = int8(v >> (bit % 8) & (1<<window - 1))
	}
	for i := range digitsN - 1 {
		carry := (digits[i] + half) >> window
		digits[i] -= carry << window
		digits[i+1] += carry
	}
}
