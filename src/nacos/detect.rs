//! Which server answers, and which API generation to speak to it.
//!
//! - Nacos 3.x: `GET /v3/admin/core/state` answers `{"code":0,"data":{"version":"3.0.3",…}}`
//!   (without a token on 3.0.3); its `/v1/console/server/state` answers 410.
//! - Nacos 1.x/2.x: `GET /v1/console/server/state` answers `{"version":"2.5.1",…}`; 2.x answers
//!   501 `no such api` to every v3 path.
//! - rnacos: neither state endpoint, but the v1 naming API: version unknown, V1.

use std::time::Duration;

use super::config::ApiGeneration;
use super::error::Result;
use super::transport::{Operation, Req, Transport};
use super::{rnacos, v1, v3, wire, ServerFlavor, ServerInfo};

/// Nacos 2.x/3.x refresh the view every listing reads 500 ms after a change (their default
/// `nacos.naming.push.pushTaskDelay`).
const VIEW_REFRESH: Duration = Duration::from_millis(500);

pub(super) async fn probe(t: &Transport) -> Result<ServerInfo> {
    let configured = t.config.api;
    // The 3.x state endpoint first, whatever is configured: it tells the version for status. Only
    // an answer that the endpoint does not exist moves on; a server that cannot answer (refused,
    // 5xx) ends the probe, or a Nacos coming back would pass for a v1-compatible server.
    let version = match state_version(t, v3::STATE).await? {
        Some(v) => Some(v),
        None if configured == ApiGeneration::V3 => None,
        None => state_version(t, v1::SERVER_STATE).await?,
    };
    if let Some(version) = version {
        let major = major(&version);
        let api = match configured {
            ApiGeneration::Auto => match major {
                Some(m) if m >= 3 => ApiGeneration::V3,
                Some(1) => ApiGeneration::V1,
                _ => ApiGeneration::V2,
            },
            other => other,
        };
        return Ok(nacos(version, api));
    }
    if configured == ApiGeneration::V3 {
        return Ok(nacos("unknown".into(), ApiGeneration::V3));
    }
    // No state endpoint: a v1-compatible server (rnacos) if the naming API answers.
    let req = Req::get(
        Operation::ServerInfo,
        v1::SERVICE_LIST,
        vec![
            ("pageNo", "1".into()),
            ("pageSize", "1".into()),
            ("namespaceId", t.ns()),
        ],
    );
    t.request(&req)
        .await?
        .ok()?
        .parse(wire::parse_v1_service_list)?;
    let console = rnacos::console(t).await;
    Ok(ServerInfo {
        version: "unknown".into(),
        api: match configured {
            ApiGeneration::V2 => ApiGeneration::V2,
            _ => ApiGeneration::V1,
        },
        flavor: match console {
            rnacos::Console::Absent => ServerFlavor::V1Compatible,
            _ => ServerFlavor::Rnacos,
        },
        lists_disabled: console == rnacos::Console::Open,
        settle: Duration::ZERO,
        metadata_overlay: false,
        names_publishers: false,
    })
}

/// Alibaba Nacos `version`, spoken to through `api`.
fn nacos(version: String, api: ApiGeneration) -> ServerInfo {
    // 1.x keeps instances in place: a write shows at once, and PATCH replaces the metadata.
    let two_or_later = major(&version).is_none_or(|m| m >= 2);
    ServerInfo {
        version,
        api,
        flavor: ServerFlavor::Nacos,
        lists_disabled: true,
        settle: if two_or_later {
            VIEW_REFRESH
        } else {
            Duration::ZERO
        },
        metadata_overlay: two_or_later,
        names_publishers: two_or_later,
    }
}

fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.trim().parse().ok()
}

/// `Ok(Some(version))` when the state endpoint answers, `Ok(None)` when it does not exist.
async fn state_version(t: &Transport, path: &'static str) -> Result<Option<String>> {
    let reply = t
        .request(&Req::get(Operation::ServerInfo, path, Vec::new()).probing())
        .await?;
    if !reply.is_success() {
        return match reply.status {
            404 | 405 | 410 | 501 => Ok(None),
            _ => Err(reply.error()),
        };
    }
    Ok(wire::parse_server_version(&reply.body).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions() {
        assert_eq!(major("2.5.1"), Some(2));
        assert_eq!(major("3.0.3"), Some(3));
        assert_eq!(major("1.4.8-SNAPSHOT"), Some(1));
        assert_eq!(major("unknown"), None);
    }

    #[test]
    fn nacos_2_and_3_settle_keep_metadata_in_an_overlay_and_name_publishers() {
        for v in ["2.5.1", "3.0.3", "unknown"] {
            let i = nacos(v.into(), ApiGeneration::V2);
            assert_eq!(i.settle, VIEW_REFRESH, "{v}");
            assert!(i.metadata_overlay, "{v}");
            assert!(i.names_publishers, "{v}");
        }
        let old = nacos("1.4.8".into(), ApiGeneration::V1);
        assert_eq!(old.settle, Duration::ZERO);
        assert!(!old.metadata_overlay);
        assert!(!old.names_publishers);
    }
}
