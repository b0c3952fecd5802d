//! ES256 (ECDSA over P-256 with SHA-256, RFC 7518 §3.4) verification with
//! precomputed multiples, for `baton-token`'s verifier.
//!
//! A crate of its own so that it is compiled at `opt-level = 3` with the
//! rest of the signature arithmetic while the filters are built for size:
//! the point addition is written here, and inlined field arithmetic is
//! compiled at the opt-level of the crate that calls it (`"z"` made a
//! verification 10% slower in V8).
//!
//! Verifying computes `R = u1·G + u2·Q` (SEC 1 §4.1.4). A generic double
//! scalar multiplication spends most of its time on 256 point doublings.
//! Here both points, the generator `G` (once per VM) and each key `Q`, get a
//! table of signed multiples for every 8-bit window of a scalar, so a
//! verification is at most 2 × 33 point additions and no doubling: about
//! five times faster in V8, which is what makes verifying every new token
//! affordable inside Envoy.
//!
//! The tables take tens of milliseconds to build in V8, in every VM that
//! builds them: they are built by the first verification with the key, not
//! when the key is imported. So neither Envoy's
//! start-up nor its main thread's VM, which verifies no token, pays for
//! them (nor holds them); each worker's first token per key does.
//!
//! The sum stays in projective coordinates `(X:Y:Z)` and is compared with
//! `r` as `X = r·Z` (or `(r + n)·Z`), so no field inversion is computed.
//!
//! The field arithmetic is RustCrypto `p256`'s; the point addition is the
//! complete mixed addition of Renes, Costello and Batina (2015, algorithm
//! 5, for `a = -3`), checked against `p256`'s own group law in the tests.
//! Everything this module handles is public (key, message, signature), so
//! variable-time code is fine here, as in every ECDSA verifier. Tests check
//! it against `p256`'s own verifier and the Wycheproof vectors.

use std::sync::OnceLock;

use p256::elliptic_curve::Field;
use p256::elliptic_curve::PrimeField;
use p256::elliptic_curve::group::{Curve, Group};
use p256::elliptic_curve::hazmat::FieldArithmetic;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::{AffinePoint, FieldBytes, NistP256, ProjectivePoint, PublicKey, Scalar};
use sha2::{Digest, Sha256};

/// Bits per window of a key's table: each row holds the multiples
/// 1..=128 of `2^(8·row)·Q`; negative digits use the negated point. Eight
/// bits make a verification's `u2·Q` 32 or 33 additions (seven made it 37)
/// for 270 KB per key (151 KB with seven).
const KEY_WINDOW: usize = 8;
/// Bits per window of the generator's table, which exists once per VM
/// whatever the keys: nine bits (29 additions for `u1·G`), 475 KB.
const GENERATOR_WINDOW: usize = 9;
/// Rows of the larger table (the narrower window): the most digits a
/// scalar is recoded into.
const MAX_ROWS: usize = rows(KEY_WINDOW);

/// Rows for `window`-bit digits: windows covering 256 bits, and one for the
/// carry the signed recoding of the top window can leave.
const fn rows(window: usize) -> usize {
    257_usize.div_ceil(window)
}

/// Entries per row: digits run from `-per_row` to `per_row`.
const fn per_row(window: usize) -> usize {
    1 << (window - 1)
}

/// An element of P-256's base field (integers modulo `p`).
type FieldElement = <NistP256 as FieldArithmetic>::FieldElement;

/// The coefficient `b` of P-256's equation `y² = x³ - 3x + b`.
const CURVE_B: [u8; 32] = hex32("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b");
/// The group order `n`.
const ORDER: [u8; 32] = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
/// `p - n`: an `r` below it has a second candidate `x = r + n` below `p`.
const P_MINUS_ORDER: [u8; 32] = hex32("000000000000000000000000000000004319055358e8617b0c46353d039cdaae");

/// 64 lower-case hex digits as 32 big-endian bytes (at compile time; the
/// tests check each constant against `p256`).
const fn hex32(text: &str) -> [u8; 32] {
    const fn digit(c: u8) -> u8 {
        if c <= b'9' { c.wrapping_sub(b'0') } else { c.wrapping_sub(b'a' - 10) }
    }
    let text = text.as_bytes();
    let mut bytes = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        bytes[i] = (digit(text[2 * i]) << 4) | digit(text[2 * i + 1]);
        i += 1;
    }
    bytes
}

fn field_element(bytes: &[u8; 32]) -> Option<FieldElement> {
    Option::from(FieldElement::from_repr((*bytes).into()))
}

/// A point in homogeneous projective coordinates: `(X:Y:Z)` stands for
/// `(X/Z, Y/Z)`, and `Z = 0` for the identity.
#[derive(Clone, Copy)]
struct Sum {
    x: FieldElement,
    y: FieldElement,
    z: FieldElement,
}

impl Sum {
    const IDENTITY: Self = Self { x: FieldElement::ZERO, y: FieldElement::ONE, z: FieldElement::ZERO };

    /// `self + (x2, y2)` for an affine point (never the identity): the
    /// complete formula, right for doubling and for the identity in `self`.
    /// Renes, Costello, Batina 2015, algorithm 5 (`a = -3`).
    fn add_affine(&mut self, x2: FieldElement, y2: FieldElement, b: FieldElement) {
        let Self { x: x1, y: y1, z: z1 } = *self;
        let t0 = x1 * x2;
        let t1 = y1 * y2;
        let t3 = (x1 + y1) * (x2 + y2) - (t0 + t1);
        let t4 = y2 * z1 + y1;
        let y3 = x2 * z1 + x1;
        let z3 = y3 - b * z1;
        let x3 = z3.double() + z3;
        let z3 = t1 - x3;
        let x3 = t1 + x3;
        let t2 = z1.double() + z1;
        let y3 = b * y3 - (t2 + t0);
        let y3 = y3.double() + y3;
        let t0 = t0.double() + t0 - t2;
        self.x = x3 * t3 - t4 * y3;
        self.y = x3 * z3 + t0 * y3;
        self.z = z3 * t4 + t3 * t0;
    }
}

/// An affine point's coordinates, for [`Sum::add_affine`].
#[derive(Clone, Copy)]
struct Coordinates {
    x: FieldElement,
    y: FieldElement,
}

/// Signed multiples of one point: `points[row * per_row(window) + j]` is
/// `(j + 1)·2^(window·row)·P`.
struct Multiples {
    window: usize,
    points: Vec<Coordinates>,
}

impl Multiples {
    /// The table of `point` for `window`-bit digits (at least
    /// `KEY_WINDOW`, at most 14); `None` for the identity.
    fn of(point: ProjectivePoint, window: usize) -> Option<Self> {
        if !(KEY_WINDOW..=14).contains(&window) {
            return None;
        }
        let mut projective = Vec::with_capacity(rows(window) * per_row(window));
        let mut base = point;
        for _ in 0..rows(window) {
            let mut multiple = base;
            for _ in 0..per_row(window) {
                projective.push(multiple);
                multiple += base;
            }
            for _ in 0..window {
                base = base.double();
            }
        }
        let mut affine = vec![AffinePoint::IDENTITY; projective.len()];
        ProjectivePoint::batch_normalize(&projective, &mut affine);
        if bool::from(point.is_identity()) {
            return None;
        }
        // No entry is the identity: `(j + 1)·2^(window·row)` has no factor
        // but 2 and numbers up to per_row(window), never the prime order.
        let points = affine
            .iter()
            .map(|point| {
                let x = Option::from(FieldElement::from_repr(point.x()))?;
                let y = Option::from(FieldElement::from_repr(point.y()))?;
                Some(Coordinates { x, y })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { window, points })
    }

    /// Adds `k·P` to `sum`; `None` if `k` does not fit the table (never for
    /// a scalar).
    fn add_multiple(&self, k: &Scalar, sum: &mut Sum, b: FieldElement) -> Option<()> {
        let per_row = per_row(self.window);
        for (row, digit) in signed_digits(k, self.window)?.into_iter().enumerate() {
            if digit == 0 {
                continue;
            }
            // 1 <= |digit| <= per_row: an entry of this row.
            let magnitude = usize::from(digit.unsigned_abs());
            let point = self.points.get(row * per_row + magnitude - 1)?;
            if digit > 0 {
                sum.add_affine(point.x, point.y, b);
            } else {
                sum.add_affine(point.x, -point.y, b);
            }
        }
        Some(())
    }
}

/// `k` in base `2^window` with digits in `-2^(window-1)..=2^(window-1)`,
/// least significant first; the rows past `rows(window)` are 0. `None` for
/// a window outside `KEY_WINDOW..=14`.
fn signed_digits(k: &Scalar, window: usize) -> Option<[i16; MAX_ROWS]> {
    if !(KEY_WINDOW..=14).contains(&window) {
        return None;
    }
    let bytes = k.to_repr(); // big-endian
    let bit = |position: usize| -> i16 {
        if position >= 256 {
            return 0;
        }
        let byte = bytes[31 - position / 8];
        i16::from((byte >> (position % 8)) & 1)
    };
    let half = i16::try_from(per_row(window)).ok()?;
    let mut digits = [0i16; MAX_ROWS];
    let mut carry = 0i16;
    for (row, digit) in digits.iter_mut().take(rows(window)).enumerate() {
        let mut value = carry;
        for b in 0..window {
            value += bit(row * window + b) << b;
        }
        // Digits above half the window are taken as negative, with a carry.
        carry = i16::from(value > half);
        if carry == 1 {
            value -= 1 << window;
        }
        *digit = value;
    }
    (carry == 0).then_some(digits)
}

fn field_bytes(bytes: &[u8]) -> Option<FieldBytes> {
    FieldBytes::try_from(bytes).ok()
}

/// Multiples of the generator, computed on first use in this VM.
fn generator() -> Option<&'static Multiples> {
    static GENERATOR: OnceLock<Option<Multiples>> = OnceLock::new();
    GENERATOR.get_or_init(|| Multiples::of(ProjectivePoint::generator(), GENERATOR_WINDOW)).as_ref()
}

/// An imported P-256 key; its multiples are built once, when first used.
pub struct Es256Key {
    point: ProjectivePoint,
    multiples: OnceLock<Option<Multiples>>,
}

impl core::fmt::Debug for Es256Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Es256Key { .. }")
    }
}

impl Es256Key {
    /// Imports the point `(x, y)`: refused unless it is on the curve and not
    /// the identity. Cheap: the tables are built by the first
    /// verification.
    pub fn import(x: &[u8; 32], y: &[u8; 32]) -> Option<Self> {
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..33].copy_from_slice(x);
        sec1[33..].copy_from_slice(y);
        let key = PublicKey::from_sec1_bytes(&sec1).ok()?;
        Some(Self { point: ProjectivePoint::from(*key.as_affine()), multiples: OnceLock::new() })
    }

    /// Whether the key's multiples (and so the generator's) are built.
    #[cfg(test)]
    fn is_prepared(&self) -> bool {
        self.multiples.get().is_some()
    }

    fn multiples(&self) -> Option<&Multiples> {
        self.multiples.get_or_init(|| Multiples::of(self.point, KEY_WINDOW)).as_ref()
    }

    /// Whether `signature` (JWS form: `r || s`, 32 bytes each) is valid for
    /// `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.check(message, signature).unwrap_or(false)
    }

    fn check(&self, message: &[u8], signature: &[u8]) -> Option<bool> {
        if signature.len() != 64 {
            return Some(false);
        }
        // r and s must be integers in [1, n - 1].
        let r: Scalar = Option::from(Scalar::from_repr(field_bytes(&signature[..32])?))?;
        let s: Scalar = Option::from(Scalar::from_repr(field_bytes(&signature[32..])?))?;
        if bool::from(r.is_zero()) || bool::from(s.is_zero()) {
            return Some(false);
        }
        let digest = Sha256::digest(message);
        let e = <Scalar as Reduce<FieldBytes>>::reduce(&field_bytes(digest.as_slice())?);
        let w: Scalar = Option::from(s.invert_vartime())?;
        let b = field_element(&CURVE_B)?;
        let mut sum = Sum::IDENTITY;
        generator()?.add_multiple(&(e * w), &mut sum, b)?;
        self.multiples()?.add_multiple(&(r * w), &mut sum, b)?;
        if bool::from(sum.z.is_zero()) {
            return Some(false);
        }
        // The signature holds if R's x, reduced mod n, is r: x is r, or
        // r + n when that is still below p. With x = X/Z: X = r·Z.
        let r_bytes: [u8; 32] = r.to_repr().into();
        let r_field = field_element(&r_bytes)?;
        if sum.x == r_field * sum.z {
            return Some(true);
        }
        if r_bytes < P_MINUS_ORDER {
            let r_plus_n = r_field + field_element(&ORDER)?;
            return Some(sum.x == r_plus_n * sum.z);
        }
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::{ECDSAP256KeyPairLike, ES256KeyPair};
    use p256::ecdsa::signature::{Signer, Verifier};
    use p256::ecdsa::{Signature, SigningKey};

    fn signing_key() -> SigningKey {
        ES256KeyPair::generate().key_pair().as_ref().clone()
    }

    /// Scalars spread over the whole range, reproducibly.
    fn scalar(seed: u64) -> Scalar {
        let bytes = field_bytes(Sha256::digest(seed.to_be_bytes()).as_slice()).unwrap_or_default();
        <Scalar as Reduce<FieldBytes>>::reduce(&bytes)
    }

    fn key_parts(signing: &SigningKey) -> ([u8; 32], [u8; 32]) {
        let point = signing.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
        x.copy_from_slice(&bytes[1..33]);
        y.copy_from_slice(&bytes[33..65]);
        (x, y)
    }

    #[test]
    fn digits_recompose_the_scalar() {
        for window in [KEY_WINDOW, GENERATOR_WINDOW] {
            let half = i16::try_from(per_row(window)).unwrap_or_else(|_| unreachable!());
            for seed in 0u64..300 {
                let k = scalar(seed);
                let digits = signed_digits(&k, window).unwrap_or_else(|| unreachable!());
                let mut sum = Scalar::ZERO;
                let mut weight = Scalar::ONE;
                let step = Scalar::from(1u64 << window);
                for (row, digit) in digits.into_iter().enumerate() {
                    assert!((-half..=half).contains(&digit));
                    assert!(row < rows(window) || digit == 0, "a digit past the table's rows");
                    let magnitude = Scalar::from(u64::from(digit.unsigned_abs()));
                    sum += if digit < 0 { -magnitude * weight } else { magnitude * weight };
                    weight *= step;
                }
                assert_eq!(sum, k, "window {window}, seed {seed}");
            }
            let top = -Scalar::ONE; // n - 1, the largest scalar
            assert!(signed_digits(&top, window).is_some());
        }
        assert!(signed_digits(&Scalar::ONE, KEY_WINDOW - 1).is_none());
    }

    /// `sum` as an affine point of `p256`.
    fn affine_of(sum: &Sum) -> AffinePoint {
        if bool::from(sum.z.is_zero()) {
            return AffinePoint::IDENTITY;
        }
        let z_inverse: FieldElement = Option::from(sum.z.invert()).unwrap_or_else(|| unreachable!());
        let (x, y) = ((sum.x * z_inverse).to_repr(), (sum.y * z_inverse).to_repr());
        Option::from(AffinePoint::from_coordinates(&x, &y)).unwrap_or_else(|| unreachable!("off the curve"))
    }

    fn coordinates(point: &ProjectivePoint) -> (FieldElement, FieldElement) {
        let affine = point.to_affine();
        let x = Option::from(FieldElement::from_repr(affine.x())).unwrap_or_else(|| unreachable!());
        let y = Option::from(FieldElement::from_repr(affine.y())).unwrap_or_else(|| unreachable!());
        (x, y)
    }

    #[test]
    fn the_constants_are_p256s() {
        let b = field_element(&CURVE_B).unwrap_or_else(|| unreachable!());
        // G is on y² = x³ - 3x + b.
        let (x, y) = coordinates(&ProjectivePoint::generator());
        assert_eq!(y.square(), x.square() * x - (x.double() + x) + b);
        // n - 1 is the largest scalar; n itself is not one.
        let largest: [u8; 32] = (-Scalar::ONE).to_repr().into();
        let mut order = largest;
        order[31] += 1;
        assert_eq!(order, ORDER);
        assert!(bool::from(Scalar::from_repr(ORDER.into()).is_none()));
        // p - n + n = p, which is 0 in the field.
        let p_minus_n = field_element(&P_MINUS_ORDER).unwrap_or_else(|| unreachable!());
        assert!(bool::from((p_minus_n + field_element(&ORDER).unwrap_or_else(|| unreachable!())).is_zero()));
    }

    #[test]
    fn the_addition_is_p256s_group_law() {
        let b = field_element(&CURVE_B).unwrap_or_else(|| unreachable!());
        let g = ProjectivePoint::generator();
        for seed in 0u64..64 {
            let p = g * scalar(seed);
            let q = g * scalar(seed + 1000);
            let (qx, qy) = coordinates(&q);
            // P + Q, from a sum that is not normalised (Z ≠ 1).
            let mut sum = Sum::IDENTITY;
            let (px, py) = coordinates(&p);
            sum.add_affine(px, py, b);
            sum.add_affine(px, py, b); // 2P, by the same complete formula
            sum.add_affine(qx, qy, b);
            assert_eq!(affine_of(&sum), (p.double() + q).to_affine(), "seed {seed}");
            // Adding -2P - Q gives the identity.
            let (rx, ry) = coordinates(&(p.double() + q));
            sum.add_affine(rx, -ry, b);
            assert!(bool::from(sum.z.is_zero()), "seed {seed}: the identity");
            // The identity plus P is P.
            sum.add_affine(px, py, b);
            assert_eq!(affine_of(&sum), p.to_affine());
        }
    }

    #[test]
    fn a_table_sums_to_the_scalar_multiple() {
        let b = field_element(&CURVE_B).unwrap_or_else(|| unreachable!());
        let point = ProjectivePoint::generator() * scalar(7);
        for window in [KEY_WINDOW, GENERATOR_WINDOW] {
            let table = Multiples::of(point, window).unwrap_or_else(|| unreachable!());
            for seed in 0u64..40 {
                let k = scalar(seed);
                let mut sum = Sum::IDENTITY;
                table.add_multiple(&k, &mut sum, b).unwrap_or_else(|| unreachable!());
                assert_eq!(affine_of(&sum), (point * k).to_affine(), "window {window}, seed {seed}");
            }
        }
        assert!(Multiples::of(ProjectivePoint::IDENTITY, KEY_WINDOW).is_none());
        assert!(Multiples::of(point, KEY_WINDOW - 1).is_none());
    }

    #[test]
    fn agrees_with_p256s_own_verifier() {
        for round in 0..40 {
            let signing = signing_key();
            let (x, y) = key_parts(&signing);
            let key = Es256Key::import(&x, &y).unwrap_or_else(|| unreachable!());
            let message = format!("header.payload-{round}");
            let signature: Signature = signing.sign(message.as_bytes());
            let bytes = signature.to_bytes();
            assert!(key.verify(message.as_bytes(), &bytes));
            assert!(signing.verifying_key().verify(message.as_bytes(), &signature).is_ok());
            // Any flipped bit, in the message or the signature, fails both.
            let mut tampered = bytes.to_vec();
            tampered[round % 64] ^= 1 << (round % 8);
            assert!(!key.verify(message.as_bytes(), &tampered));
            assert!(!key.verify(format!("header.payload-{round}!").as_bytes(), &bytes));
        }
    }

    #[test]
    fn a_key_is_prepared_by_its_first_verification_not_by_its_import() {
        let signing = signing_key();
        let (x, y) = key_parts(&signing);
        let signature: Signature = signing.sign(b"m");
        let key = Es256Key::import(&x, &y).unwrap_or_else(|| unreachable!());
        assert!(!key.is_prepared(), "importing builds nothing");
        assert!(key.verify(b"m", &signature.to_bytes()));
        assert!(key.is_prepared(), "the first verification builds the table");
        assert!(key.verify(b"m", &signature.to_bytes()), "and the next uses it");
    }

    #[test]
    fn malformed_signatures_fail() {
        let signing = signing_key();
        let (x, y) = key_parts(&signing);
        let key = Es256Key::import(&x, &y).unwrap_or_else(|| unreachable!());
        let signature: Signature = signing.sign(b"m");
        let bytes = signature.to_bytes();
        assert!(!key.verify(b"m", &bytes[..63]));
        assert!(!key.verify(b"m", &[0u8; 64]), "r = s = 0");
        let mut r_is_n = bytes.to_vec();
        r_is_n[..32]
            .copy_from_slice(&hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"));
        assert!(!key.verify(b"m", &r_is_n), "r = n is out of range");
        assert!(Es256Key::import(&[1; 32], &[2; 32]).is_none(), "a point off the curve");
        assert!(Es256Key::import(&[0; 32], &[0; 32]).is_none(), "the identity");
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap_or(0)).collect()
    }

    #[test]
    fn wycheproof_p1363_vectors() {
        use wycheproof::TestResult;
        use wycheproof::ecdsa::{TestName, TestSet};
        let set =
            TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap_or_else(|e| unreachable!("{e:?}"));
        let mut checked = 0;
        for group in &set.test_groups {
            let point: &[u8] = &group.key.key;
            let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
            x.copy_from_slice(&point[1..33]);
            y.copy_from_slice(&point[33..65]);
            let Some(key) = Es256Key::import(&x, &y) else {
                // Every key in this file is valid.
                unreachable!("group key refused");
            };
            for test in &group.tests {
                let verified = key.verify(&test.msg, &test.sig);
                let what: String = format!("tc {} ({})", test.tc_id, test.comment);
                match test.result {
                    TestResult::Valid => assert!(verified, "{what} should verify"),
                    TestResult::Invalid => assert!(!verified, "{what} should not verify"),
                    TestResult::Acceptable => {}
                }
                checked += 1;
            }
        }
        assert!(checked > 200, "only {checked} vectors");
    }
}
