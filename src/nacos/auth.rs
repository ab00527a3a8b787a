//! Credentials, the login-token cache and access-key (MSE) signing.

use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// How the client authenticates. `Debug` never shows the secret parts.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    None,
    /// Nacos user: log in for a token (`/v1/auth/login`, 3.x `/v3/auth/user/login`).
    UserPassword { username: String, password: String },
    /// Alibaba Cloud MSE style: every request is signed with HmacSHA1 of the secret key.
    AccessKey {
        access_key: String,
        secret_key: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::UserPassword { username, .. } => f
                .debug_struct("UserPassword")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::AccessKey { access_key, .. } => f
                .debug_struct("AccessKey")
                .field("access_key", access_key)
                .field("secret_key", &"<redacted>")
                .finish(),
        }
    }
}

/// A cached login token. `Debug` hides the token.
#[derive(Clone)]
pub(crate) struct CachedToken {
    pub token: String,
    /// When to stop using it: shortly before the server's `tokenTtl` runs out.
    pub refresh_at: Instant,
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("token", &"<redacted>")
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

impl CachedToken {
    /// Reuse the token until 10% of its TTL (at least 5 s, at most 5 min) is left,
    /// so a request never races the expiry.
    pub fn new(token: String, ttl_seconds: u64, now: Instant) -> Self {
        let ttl = Duration::from_secs(ttl_seconds);
        let margin = (ttl / 10).clamp(Duration::from_secs(5), Duration::from_secs(300));
        Self {
            token,
            refresh_at: now + ttl.saturating_sub(margin),
        }
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }
}

/// The three MSE signing parameters: `ak`, `data`, `signature`.
/// `data` is `<epochMillis>@@<group@@service>` (just `<epochMillis>` without a service),
/// `signature` is Base64(HmacSHA1(data, sk)).
pub fn sign_request(
    access_key: &str,
    secret_key: &str,
    grouped_service: Option<&str>,
    epoch_millis: u64,
) -> [(&'static str, String); 3] {
    let data = match grouped_service {
        Some(s) if !s.is_empty() => format!("{epoch_millis}@@{s}"),
        _ => epoch_millis.to_string(),
    };
    let signature = hmac_sha1_base64(secret_key.as_bytes(), data.as_bytes());
    [
        ("ak", access_key.to_string()),
        ("data", data),
        ("signature", signature),
    ]
}

fn hmac_sha1_base64(key: &[u8], data: &[u8]) -> String {
    // HMAC accepts keys of any length, so new_from_slice cannot fail; fall back to empty defensively.
    match Hmac::<Sha1>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials::UserPassword {
            username: "nacos".into(),
            password: "hunter2".into(),
        };
        let s = format!("{c:?}");
        assert!(s.contains("nacos") && !s.contains("hunter2"));
        let c = Credentials::AccessKey {
            access_key: "AK1".into(),
            secret_key: "SK-secret".into(),
        };
        assert!(!format!("{c:?}").contains("SK-secret"));
        let t = CachedToken::new("tok-secret".into(), 100, Instant::now());
        assert!(!format!("{t:?}").contains("tok-secret"));
    }

    #[test]
    fn hmac_sha1_known_vector() {
        // RFC 2202 test case 2 (hex effcdf6ae5eb2fa2d27416d5f184df9c259a7c79).
        assert_eq!(
            hmac_sha1_base64(b"Jefe", b"what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }

    #[test]
    fn signing_params() {
        let p = sign_request("ak", "sk", Some("DEFAULT_GROUP@@orders"), 1700000000000);
        assert_eq!(p[0], ("ak", "ak".to_string()));
        assert_eq!(p[1].1, "1700000000000@@DEFAULT_GROUP@@orders");
        assert_eq!(p[2].1, hmac_sha1_base64(b"sk", p[1].1.as_bytes()));
        let p = sign_request("ak", "sk", None, 5);
        assert_eq!(p[1].1, "5");
    }

    #[test]
    fn token_refresh_margin() {
        let now = Instant::now();
        let t = CachedToken::new("x".into(), 18000, now);
        assert!(t.is_fresh(now + Duration::from_secs(17000)));
        assert!(!t.is_fresh(now + Duration::from_secs(17701)));
        let short = CachedToken::new("x".into(), 3, now);
        assert!(!short.is_fresh(now));
    }
}
