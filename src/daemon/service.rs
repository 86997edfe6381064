//! Our registration in Ceph's service map as service `rbd-mirror`, as rbd-mirror registers
//! itself (metadata `id`, `instance_id`, `hostname`), and the status it keeps there.

use crate::rados::Rados;
use crate::rados::librados::LibradosCluster;

/// Registers the daemon; returns its instance id (the local client's global id).
pub async fn register(
    rados: &LibradosCluster,
    id: &str,
) -> Result<String, crate::rados::RadosError> {
    let instance = rados.instance_id().to_string();
    rados
        .service_register(
            "rbd-mirror",
            &instance,
            vec![
                ("id".into(), id.to_string()),
                ("instance_id".into(), instance.clone()),
                ("hostname".into(), hostname()),
                ("ceph_version".into(), "rbd-relay".into()),
            ],
        )
        .await?;
    Ok(instance)
}

/// Our entry in Ceph's service map status, in rbd-mirror's shape: a `json` key holding
/// `{"<pool id>": {"instance_id": "<our global id>", "leader": true}}`. `rbd mirror pool
/// status` reports "daemon health: ERROR" for a pool nobody reports, and `--verbose` maps
/// each image status (written by our client) to "service: <id> on <host>" through
/// `instance_id`. Pools come and go without a notification, so the list is re-read at
/// the pool refresh interval; the status is sent only when it changed.
pub async fn publish_status(
    rados: LibradosCluster,
    instance: String,
    every: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut published = String::new();
    loop {
        match rados.pool_list().await {
            Ok(pools) => {
                let body: serde_json::Map<String, serde_json::Value> = pools
                    .iter()
                    .map(|(id, name)| {
                        let entry = serde_json::json!({
                            "name": name, "instance_id": instance, "leader": true,
                        });
                        (id.to_string(), entry)
                    })
                    .collect();
                let json = serde_json::Value::Object(body).to_string();
                if json != published {
                    match rados
                        .service_update_status(vec![("json".into(), json.clone())])
                        .await
                    {
                        Ok(()) => published = json,
                        Err(e) => tracing::warn!(%e, "updating the service map status"),
                    }
                }
            }
            Err(e) => tracing::warn!(%e, "listing pools for the service map status"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
