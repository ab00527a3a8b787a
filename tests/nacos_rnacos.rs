//! Checks the Nacos client against a running rnacos. Starts nothing itself: set RNACOS_ADDR
//! (e.g. http://127.0.0.1:18848). Fails, not skips, when it is absent.

use nacos_reconciler::model::ServiceKey;
use nacos_reconciler::nacos::{ApiGeneration, NacosClient, NacosConfig, ServerFlavor};

#[tokio::test]
async fn rnacos_round_trip() -> anyhow::Result<()> {
    let addr =
        std::env::var("RNACOS_ADDR").map_err(|_| anyhow::anyhow!("RNACOS_ADDR is not set"))?;
    let client = NacosClient::new(NacosConfig::new(vec![addr.clone()]))?;
    let info = client.server_info().await?;
    assert_eq!(info.api, ApiGeneration::V1);
    assert_eq!(info.flavor, ServerFlavor::V1Compatible);

    let service = format!("it-{}", std::process::id());
    let http = reqwest::Client::new();
    for ip in ["10.77.0.1", "10.77.0.2"] {
        let body = http
            .post(format!("{addr}/nacos/v1/ns/instance"))
            .query(&[
                ("serviceName", service.as_str()),
                ("ip", ip),
                ("port", "80"),
                ("ephemeral", "false"),
            ])
            .send()
            .await?
            .text()
            .await?;
        assert_eq!(body, "ok");
    }
    let key = ServiceKey::new("DEFAULT_GROUP", service.clone());
    assert!(client
        .list_services("DEFAULT_GROUP")
        .await?
        .contains(&service));
    let snap = client.list_instances(&key, &[]).await?;
    assert_eq!(snap.instances.len(), 2);
    let target = snap.instances[0].clone();

    client.disable(&target, "uid-test").await?;
    let got = client
        .get_instance(&target.key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("gone"))?;
    assert!(!got.enabled);
    assert_eq!(got.disabled_by(), Some("uid-test"));
    assert_eq!(got.weight, target.weight);
    let listed = client.list_instances(&key, &[]).await?;
    // rnacos hides disabled instances unless its no-auth console listing is on.
    assert_eq!(
        listed.instances.len(),
        if info.lists_disabled { 2 } else { 1 }
    );

    client.enable(&got).await?;
    client.deregister(&target).await?;
    assert!(client.get_instance(&target.key).await?.is_none());
    // PATCH of a missing instance is refused instead of re-creating it.
    assert!(client
        .disable(&target, "uid-test")
        .await
        .unwrap_err()
        .is_not_found());
    assert!(client.get_instance(&target.key).await?.is_none());
    let rest = client.list_instances(&key, &[]).await?;
    client.deregister(&rest.instances[0]).await?;
    Ok(())
}
