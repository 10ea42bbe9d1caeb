//! Device tokens (AWP1.md §4.1, auth method 1).
//!
//! `token = HMAC-SHA256(key = tenant secret, message)`, where `message` is
//! `"AWP1-TOKEN" 0x00 tenant_id 0x00 device_id 0x00 u64be(token_expiry)`.
//! The gateway verifies, the simulator (and agents) sign.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

/// The length of a device token.
pub const TOKEN_LEN: usize = 32;

const DOMAIN: &[u8] = b"AWP1-TOKEN";

/// The device token for `tenant_id`/`device_id`, valid until `expiry`
/// (unix seconds; 0 for never), made with `secret`.
pub fn device_token(secret: &[u8], tenant_id: &str, device_id: &str, expiry: u64) -> [u8; TOKEN_LEN] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(DOMAIN);
    mac.update(&[0]);
    mac.update(tenant_id.as_bytes());
    mac.update(&[0]);
    mac.update(device_id.as_bytes());
    mac.update(&[0]);
    mac.update(&expiry.to_be_bytes());
    mac.finalize().into_bytes().into()
}

/// Whether `token` is valid for the device under any of `secrets` and not
/// expired at `now_unix_secs`.
///
/// Every secret is tried and the comparisons are constant-time, so the time
/// taken says nothing about which secret matched or how close the token was.
/// An expired token and a wrong one give the same `false`.
pub fn verify_device_token<S: AsRef<[u8]>>(
    secrets: &[S],
    tenant_id: &str,
    device_id: &str,
    expiry: u64,
    token: &[u8; TOKEN_LEN],
    now_unix_secs: u64,
) -> bool {
    let mut matched = Choice::from(0);
    for secret in secrets {
        let expected = device_token(secret.as_ref(), tenant_id, device_id, expiry);
        matched |= expected.ct_eq(token);
    }
    let live = expiry == 0 || now_unix_secs <= expiry;
    bool::from(matched) && live
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANDROID_TOKEN: &str = "f4151fbd02cb529c42e96aaa66d33cbea66f646d4c2283e1f46b9def3622a315";

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn matches_the_vector_token() {
        let token = device_token(b"acme-secret-1", "acme", "dev-0001", 0);
        assert_eq!(token, hex32(ANDROID_TOKEN));
    }

    #[test]
    fn any_of_several_secrets_verifies() {
        let token = hex32(ANDROID_TOKEN);
        let secrets = ["old-secret", "acme-secret-1"];
        assert!(verify_device_token(&secrets, "acme", "dev-0001", 0, &token, 1));
        assert!(!verify_device_token(&["old-secret"], "acme", "dev-0001", 0, &token, 1));
        assert!(!verify_device_token(&secrets, "acme", "dev-0002", 0, &token, 1));
        assert!(!verify_device_token::<&str>(&[], "acme", "dev-0001", 0, &token, 1));
    }

    #[test]
    fn expiry_is_inclusive_and_zero_is_never() {
        let token = device_token(b"s", "t", "d", 100);
        assert!(verify_device_token(&["s"], "t", "d", 100, &token, 100));
        assert!(!verify_device_token(&["s"], "t", "d", 100, &token, 101));
        let forever = device_token(b"s", "t", "d", 0);
        assert!(verify_device_token(&["s"], "t", "d", 0, &forever, u64::MAX));
    }
}
