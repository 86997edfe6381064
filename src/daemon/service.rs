//! Our registration in Ceph's service map as service `rbd-mirror`, as rbd-mirror registers
//! itself (metadata `id`, `instance_id`, `hostname`), and the status it keeps there.

use std::sync::Arc;

use crate::mirror::Registry;
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
/// each image status (written by the image's owner) to "service: <id> on <host>" through
/// `instance_id`. With several daemons, `leader` is true only on the pool's lowest live
/// instance (a pool whose instances are not known yet: true, as with a single daemon).
/// `callouts` carries the pool's errors at level `error`, as rbd-mirror's callouts: `rbd
/// mirror pool status` then shows "daemon health: ERROR" and, with `--verbose`, the texts.
/// Pools come and go without a notification, so the list is re-read at the pool refresh
/// interval, and at once when a pool's instances change; the status is sent only when it
/// changed.
pub async fn publish_status(
    rados: LibradosCluster,
    registry: Arc<Registry>,
    instance: String,
    every: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut published = String::new();
    loop {
        match rados.pool_list().await {
            Ok(pools) => {
                let members = registry.instances();
                let body: serde_json::Map<String, serde_json::Value> = pools
                    .iter()
                    .map(|(id, name)| {
                        let leader = members
                            .iter()
                            .find(|(pool, _)| pool == name)
                            .is_none_or(|(_, m)| m.leader() == Some(m.me));
                        let callouts: serde_json::Map<_, _> = (registry.pool_errors(name))
                            .into_iter()
                            .enumerate()
                            .map(|(i, (_, text))| {
                                let callout = serde_json::json!({"level": "error", "text": text});
                                (i.to_string(), callout)
                            })
                            .collect();
                        let entry = serde_json::json!({
                            "name": name, "instance_id": instance, "leader": leader,
                            "callouts": callouts,
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
            _ = registry.status_changed() => {}
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
