//! An in-memory registry for unit tests of the code that writes to Nacos. It plays the server
//! behaviours the write path must survive: a DELETE answered `ok` that does nothing (a live gRPC
//! owner on Nacos 2.x/3.x, or a 1.x client that registered again before the read-back), answers lost
//! after the write took (a timeout), failing reads, and writes to instances that are gone. Not a
//! model of Nacos beyond that.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{
    ApiGeneration, ClientDetail, Connection, NacosError, Publisher, Registry, Result, ServerFlavor,
    ServerInfo,
};
use crate::model::{Instance, InstanceKey, ServiceKey, ServiceSnapshot, DISABLED_BY_KEY};

/// How the fake answers; everything off is a registry that does what it is told.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// A DELETE is answered `ok` and the instance stays.
    pub deletes_ignored: bool,
    /// Writes take, but their answer is lost (the client sees a timeout).
    pub answers_lost: bool,
    /// `enabled=true` is answered `ok` and the instance stays disabled.
    pub enables_ignored: bool,
    /// `enabled=false` is refused (an error answer; nothing changes).
    pub disables_refused: bool,
    /// Every read fails.
    pub reads_fail: bool,
    /// The server names a gRPC connection as the sole publisher of every instance (Nacos 2.x/3.x
    /// with an SDK client); with `deletes_ignored`, what such a server does.
    pub connection_owned: bool,
    /// The publisher list names an HTTP registration (a 1.x client's beats) for the instance.
    pub beats_owned: bool,
    /// The publisher list is refused (a user without admin reads on Nacos 2.x).
    pub publishers_refused: bool,
}

/// The connection the fake names with `connection_owned`.
pub const OWNER_ID: &str = "1796596545084_10.1.0.99_49866";

#[derive(Debug, Default)]
pub struct FakeRegistry {
    pub behaviour: Behaviour,
    instances: Mutex<BTreeMap<InstanceKey, Instance>>,
    writes: Mutex<Vec<String>>,
}

fn unreachable(path: &str) -> NacosError {
    NacosError::Unreachable {
        addresses: "fake".into(),
        path: path.into(),
        reason: "timed out".into(),
    }
}

impl FakeRegistry {
    pub fn with(behaviour: Behaviour, instances: impl IntoIterator<Item = Instance>) -> Self {
        Self {
            behaviour,
            instances: Mutex::new(instances.into_iter().map(|i| (i.key.clone(), i)).collect()),
            writes: Mutex::default(),
        }
    }

    /// The instance as the registry holds it now.
    pub fn get(&self, key: &InstanceKey) -> Option<Instance> {
        self.instances.lock().unwrap().get(key).cloned()
    }

    /// Every write asked for, in order: `deregister ip:port`, `disable ip:port by MARKER`, `enable ip:port`.
    pub fn writes(&self) -> Vec<String> {
        self.writes.lock().unwrap().clone()
    }

    fn log(&self, write: String) {
        self.writes.lock().unwrap().push(write);
    }

    /// The write's answer: lost when so configured (after the write took).
    fn answer(&self, path: &str) -> Result<()> {
        if self.behaviour.answers_lost {
            return Err(unreachable(path));
        }
        Ok(())
    }

    fn set_enabled(&self, instance: &Instance, by: Option<&str>) -> Result<()> {
        let mut all = self.instances.lock().unwrap();
        let Some(held) = all.get_mut(&instance.key) else {
            return Err(NacosError::NotFound {
                address: "fake".into(),
                path: "/nacos/v1/ns/instance".into(),
                what: format!("instance {}", instance.key),
            });
        };
        match by {
            Some(_) if self.behaviour.disables_refused => {
                return Err(NacosError::Server {
                    address: "fake".into(),
                    path: "/nacos/v1/ns/instance".into(),
                    status: 500,
                    code: None,
                    body: "refused".into(),
                });
            }
            Some(marker) => {
                held.enabled = false;
                held.metadata
                    .insert(DISABLED_BY_KEY.to_string(), marker.to_string());
            }
            None if self.behaviour.enables_ignored => {}
            None => {
                held.enabled = true;
                held.metadata.remove(DISABLED_BY_KEY);
            }
        }
        drop(all);
        self.answer("/nacos/v1/ns/instance")
    }
}

impl Registry for FakeRegistry {
    async fn server_info(&self) -> Result<ServerInfo> {
        Ok(ServerInfo {
            version: "fake".into(),
            api: ApiGeneration::V2,
            flavor: ServerFlavor::Nacos,
            lists_disabled: true,
            settle: Duration::ZERO,
            metadata_overlay: false,
            names_publishers: true,
        })
    }

    async fn list_services(&self, _group: &str) -> Result<Vec<String>> {
        let all = self.instances.lock().unwrap();
        let mut names: Vec<String> = all.keys().map(|k| k.service.name.clone()).collect();
        names.dedup();
        Ok(names)
    }

    async fn list_instances(
        &self,
        service: &ServiceKey,
        _clusters: &[String],
    ) -> Result<ServiceSnapshot> {
        if self.behaviour.reads_fail {
            return Err(unreachable("/nacos/v1/ns/instance/list"));
        }
        let all = self.instances.lock().unwrap();
        Ok(ServiceSnapshot {
            service: service.clone(),
            instances: all
                .values()
                .filter(|i| &i.key.service == service)
                .cloned()
                .collect(),
            unaddressable: vec![],
        })
    }

    async fn deregister(&self, instance: &Instance) -> Result<()> {
        self.log(format!(
            "deregister {}:{}",
            instance.key.ip, instance.key.port
        ));
        if !self.behaviour.deletes_ignored {
            self.instances.lock().unwrap().remove(&instance.key);
        }
        self.answer("/nacos/v1/ns/instance")
    }

    async fn disable(&self, instance: &Instance, by: &str) -> Result<()> {
        self.log(format!(
            "disable {}:{} by {by}",
            instance.key.ip, instance.key.port
        ));
        self.set_enabled(instance, Some(by))
    }

    async fn enable(&self, instance: &Instance) -> Result<()> {
        self.log(format!("enable {}:{}", instance.key.ip, instance.key.port));
        self.set_enabled(instance, None)
    }

    async fn publishers(&self, instance: &Instance) -> Result<Vec<Publisher>> {
        let path = "/nacos/v2/ns/client/service/publisher/list";
        if self.behaviour.reads_fail {
            return Err(unreachable(path));
        }
        if self.behaviour.publishers_refused {
            return Err(NacosError::Auth {
                address: "fake".into(),
                path: path.into(),
                reason: "authorization failed!".into(),
            });
        }
        Ok(if self.behaviour.connection_owned {
            vec![Publisher::from_client_id(OWNER_ID)]
        } else if self.behaviour.beats_owned {
            vec![Publisher::from_client_id(&format!(
                "{}:{}#true",
                instance.listed_ip, instance.key.port
            ))]
        } else {
            Vec::new()
        })
    }

    async fn client_detail(&self, _c: &Connection) -> Result<ClientDetail> {
        Ok(ClientDetail {
            sdk: Some("Nacos-Java-Client:v2.5.1".into()),
            ip: Some("10.1.0.99".into()),
            app: None,
        })
    }

    async fn read_back(
        &self,
        instance: &Instance,
        _settled: fn(Option<&Instance>) -> bool,
    ) -> Result<Option<Instance>> {
        if self.behaviour.reads_fail {
            return Err(unreachable("/nacos/v1/ns/instance/list"));
        }
        Ok(self.get(&instance.key))
    }
}
