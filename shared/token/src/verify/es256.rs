//! ES256 (ECDSA over P-256 with SHA-256, RFC 7518 §3.4) verification with
//! precomputed multiples.
//!
//! Verifying computes `R = u1·G + u2·Q` (SEC 1 §4.1.4). A generic double
//! scalar multiplication spends most of its time on 256 point doublings.
//! Here both points, the generator `G` (once per VM) and each key `Q` (when
//! the key is imported), get a table of signed multiples for every 7-bit
//! window of a scalar, so a verification is 2 × 37 point additions and no
//! doubling: about five times faster in V8, which is what makes verifying
//! every new token affordable inside Envoy.
//!
//! The field and group arithmetic is RustCrypto `p256`'s (complete addition
//! formulas, batch normalisation); this module only chooses which table
//! entries to add, and checks the equation. Everything it handles is public
//! (key, message, signature), so variable-time code is fine here, as in
//! every ECDSA verifier. Tests check it against `p256`'s own verifier and
//! the Wycheproof vectors.

use alloc::vec;
use alloc::vec::Vec;
use std::sync::OnceLock;

use p256::elliptic_curve::Field;
use p256::elliptic_curve::PrimeField;
use p256::elliptic_curve::group::{Curve, Group};
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::{AffinePoint, FieldBytes, ProjectivePoint, PublicKey, Scalar};
use sha2::{Digest, Sha256};

/// Bits per window: each table row holds the multiples 1..=64 of
/// `2^(7·row)·P`; negative digits use the negated point.
const WINDOW: usize = 7;
/// Rows: windows covering 256 bits. The top window holds at most 4 bits of
/// the scalar, so a recoding carry never needs a further row.
const ROWS: usize = 256_usize.div_ceil(WINDOW);
/// Entries per row: digits run from -64 to 64.
const PER_ROW: usize = 1 << (WINDOW - 1);

/// Signed multiples of one point: `points[row * PER_ROW + j]` is
/// `(j + 1)·2^(WINDOW·row)·P`.
struct Multiples {
    points: Vec<AffinePoint>,
}

impl Multiples {
    fn of(point: ProjectivePoint) -> Self {
        let mut projective = Vec::with_capacity(ROWS * PER_ROW);
        let mut base = point;
        for _ in 0..ROWS {
            let mut multiple = base;
            for _ in 0..PER_ROW {
                projective.push(multiple);
                multiple += base;
            }
            for _ in 0..WINDOW {
                base = base.double();
            }
        }
        let mut points = vec![AffinePoint::IDENTITY; projective.len()];
        ProjectivePoint::batch_normalize(&projective, &mut points);
        Self { points }
    }

    /// `k·P`, or `None` if `k` does not fit the table (never for a scalar).
    fn mul(&self, k: &Scalar) -> Option<ProjectivePoint> {
        let mut sum = ProjectivePoint::IDENTITY;
        for (row, digit) in signed_digits(k)?.into_iter().enumerate() {
            if digit == 0 {
                continue;
            }
            // 1 <= |digit| <= PER_ROW: an entry of this row.
            let magnitude = usize::from(digit.unsigned_abs());
            let point = self.points.get(row * PER_ROW + magnitude - 1)?;
            if digit > 0 {
                sum += point;
            } else {
                sum += &(-*point);
            }
        }
        Some(sum)
    }
}

/// `k` in base 128 with digits in `-64..=64`, least significant first.
fn signed_digits(k: &Scalar) -> Option<[i8; ROWS]> {
    let bytes = k.to_repr(); // big-endian
    let bit = |position: usize| -> i16 {
        if position >= 256 {
            return 0;
        }
        let byte = bytes[31 - position / 8];
        i16::from((byte >> (position % 8)) & 1)
    };
    let mut digits = [0i8; ROWS];
    let mut carry = 0i16;
    for (row, digit) in digits.iter_mut().enumerate() {
        let mut value = carry;
        for b in 0..WINDOW {
            value += bit(row * WINDOW + b) << b;
        }
        // Digits above half the window are taken as negative, with a carry.
        carry = i16::from(value > PER_ROW as i16);
        if carry == 1 {
            value -= 1 << WINDOW;
        }
        *digit = i8::try_from(value).ok()?;
    }
    (carry == 0).then_some(digits)
}

fn field_bytes(bytes: &[u8]) -> Option<FieldBytes> {
    FieldBytes::try_from(bytes).ok()
}

/// Multiples of the generator, computed on first use in this VM.
fn generator() -> &'static Multiples {
    static GENERATOR: OnceLock<Multiples> = OnceLock::new();
    GENERATOR.get_or_init(|| Multiples::of(ProjectivePoint::generator()))
}

/// An imported P-256 key with its multiples.
pub(super) struct Es256Key {
    multiples: Multiples,
}

impl Es256Key {
    /// Imports the point `(x, y)`: refused unless it is on the curve and not
    /// the identity. Computes the key's multiples (and the generator's, the
    /// first time), so the cost is paid when a key set loads, not per token.
    pub(super) fn import(x: &[u8; 32], y: &[u8; 32]) -> Option<Self> {
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..33].copy_from_slice(x);
        sec1[33..].copy_from_slice(y);
        let key = PublicKey::from_sec1_bytes(&sec1).ok()?;
        let _ = generator();
        Some(Self { multiples: Multiples::of(ProjectivePoint::from(*key.as_affine())) })
    }

    /// Whether `signature` (JWS form: `r || s`, 32 bytes each) is valid for
    /// `message`.
    pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
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
        let point = generator().mul(&(e * w))? + self.multiples.mul(&(r * w))?;
        if bool::from(point.is_identity()) {
            return Some(false);
        }
        let x = <Scalar as Reduce<FieldBytes>>::reduce(&point.to_affine().x());
        Some(x == r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::{ECDSAP256KeyPairLike, ES256KeyPair};
    use p256::ecdsa::signature::{Signer, Verifier};
    use p256::ecdsa::{Signature, SigningKey};
    use std::string::String;
    use std::vec::Vec as StdVec;

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
        for seed in 0u64..300 {
            let k = scalar(seed);
            let digits = signed_digits(&k).unwrap_or_else(|| unreachable!());
            let mut sum = Scalar::ZERO;
            let mut weight = Scalar::ONE;
            let step = Scalar::from(1u64 << WINDOW);
            for digit in digits {
                assert!((-64..=64).contains(&digit));
                let magnitude = Scalar::from(u64::from(digit.unsigned_abs()));
                sum += if digit < 0 { -magnitude * weight } else { magnitude * weight };
                weight *= step;
            }
            assert_eq!(sum, k);
        }
        let top = -Scalar::ONE; // n - 1, the largest scalar
        assert!(signed_digits(&top).is_some());
    }

    #[test]
    fn agrees_with_p256s_own_verifier() {
        for round in 0..40 {
            let signing = signing_key();
            let (x, y) = key_parts(&signing);
            let key = Es256Key::import(&x, &y).unwrap_or_else(|| unreachable!());
            let message = std::format!("header.payload-{round}");
            let signature: Signature = signing.sign(message.as_bytes());
            let bytes = signature.to_bytes();
            assert!(key.verify(message.as_bytes(), &bytes));
            assert!(signing.verifying_key().verify(message.as_bytes(), &signature).is_ok());
            // Any flipped bit, in the message or the signature, fails both.
            let mut tampered = bytes.to_vec();
            tampered[round % 64] ^= 1 << (round % 8);
            assert!(!key.verify(message.as_bytes(), &tampered));
            assert!(!key.verify(std::format!("header.payload-{round}!").as_bytes(), &bytes));
        }
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

    fn hex(text: &str) -> StdVec<u8> {
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
                let what: String = std::format!("tc {} ({})", test.tc_id, test.comment);
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
