//! Errors of the Nacos client, and how an error answer becomes one.

use super::wire::{self, codes};

/// Errors of the Nacos client. Every variant names the server address and request path;
/// none carries a password, token or secret key.
#[derive(Debug, thiserror::Error)]
pub enum NacosError {
    /// Connection refused, DNS failure or timeout on every address tried.
    #[error("Nacos unreachable for {path} (tried {addresses}): {reason}")]
    Unreachable {
        addresses: String,
        path: String,
        reason: String,
    },
    /// Bad credentials, or the server denied the request even after a fresh login.
    #[error("Nacos at {address} denied {path}: {reason}")]
    Auth {
        address: String,
        path: String,
        reason: String,
    },
    /// The server answered with an error status or error code.
    #[error("Nacos at {address} answered {status} to {path}{}: {body}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Server {
        address: String,
        path: String,
        status: u16,
        code: Option<i64>,
        body: String,
    },
    /// Nacos 3.x answers HTTP 410 to the v1/v2 admin and console APIs unless its compatibility
    /// switches are on: the binding asks for an API generation this server has turned off.
    #[error(
        "Nacos at {address} has {path} switched off (HTTP 410, as Nacos 3.x does by default): \
         set nacos.apiVersion to V3 or Auto"
    )]
    ApiOff { address: String, path: String },
    /// The answer could not be understood, or a listing was inconsistent across pages.
    #[error("unexpected answer from Nacos at {address} to {path}: {reason}")]
    Protocol {
        address: String,
        path: String,
        reason: String,
    },
    /// The service or instance does not exist (HTTP 404, codes 20004/21003/21008).
    #[error("not found at Nacos {address} {path}: {what}")]
    NotFound {
        address: String,
        path: String,
        what: String,
    },
    /// The configuration cannot work (bad address, bad CA).
    #[error("invalid Nacos client configuration: {0}")]
    Config(String),
}

impl NacosError {
    /// A short, stable label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            NacosError::Unreachable { .. } => "unreachable",
            NacosError::Auth { .. } => "auth",
            NacosError::Server { .. } | NacosError::ApiOff { .. } => "server",
            NacosError::Protocol { .. } => "protocol",
            NacosError::NotFound { .. } => "not_found",
            NacosError::Config(_) => "config",
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, NacosError::NotFound { .. })
    }
}

pub type Result<T, E = NacosError> = std::result::Result<T, E>;

/// Map an error status/body to an error. Body codes win over the status: Nacos 2.x/3.x answer some
/// errors with HTTP 200 or 400 and a meaningful code.
pub fn classify_error(address: &str, path: &str, status: u16, body: &[u8]) -> NacosError {
    let code = wire::parse_error_code(body);
    let text = wire::truncate(String::from_utf8_lossy(body).trim(), 300);
    let (address, path) = (address.to_string(), path.to_string());
    if status == 410 {
        return NacosError::ApiOff { address, path };
    }
    let (code, message) = match code {
        Some((codes::ACCESS_DENIED, message)) => {
            return NacosError::Auth {
                address,
                path,
                reason: message,
            }
        }
        Some((
            codes::RESOURCE_NOT_FOUND | codes::INSTANCE_NOT_FOUND | codes::SERVICE_NOT_EXIST,
            message,
        )) => {
            return NacosError::NotFound {
                address,
                path,
                what: message,
            }
        }
        Some((code, message)) if !(200..300).contains(&status) || code != 0 => {
            (Some(code), message)
        }
        _ => (None, text),
    };
    match status {
        401 | 403 => NacosError::Auth {
            address,
            path,
            reason: message,
        },
        404 => NacosError::NotFound {
            address,
            path,
            what: message,
        },
        _ => NacosError::Server {
            address,
            path,
            status,
            code,
            body: message,
        },
    }
}
